"""How a change event travels: raw (SQS), inside EventBridge's envelope (bus → rule → queue),
or inside an SNS notification. Consumers decode all three with ``decode_change_event``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from okyaku.events.model import ChangeEvent

# What the change-event rules of template.yaml match on.
CHANGE_EVENT_SOURCE = "okyaku.crm"
CHANGE_EVENT_DETAIL_TYPE = "CRM Record Changed"


def eventbridge_entry(event: ChangeEvent, bus_name: str) -> dict[str, Any]:
    """One ``PutEvents`` entry."""
    return {
        "EventBusName": bus_name,
        "Source": CHANGE_EVENT_SOURCE,
        "DetailType": CHANGE_EVENT_DETAIL_TYPE,
        "Detail": event.model_dump_json(),
        "Time": event.occurred_at,
    }


def eventbridge_envelope(
    event: ChangeEvent,
    *,
    account: str,
    region: str,
    event_id: str | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """The body EventBridge gives an SQS target of a rule that matched the event."""
    when = (time or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": CHANGE_EVENT_DETAIL_TYPE,
        "source": CHANGE_EVENT_SOURCE,
        "account": account,
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [],
        "detail": json.loads(event.model_dump_json()),
    }


def decode_change_event(body: str) -> ChangeEvent:
    """The change event in an SQS message body, whichever way it came.

    Accepts the raw event (``SqsPublisher``), an EventBridge envelope whose ``detail`` is the
    event (a bus rule's SQS target), and an SNS notification whose ``Message`` is the event (a
    subscription without raw message delivery). Raises ``ValueError`` (pydantic's
    ``ValidationError`` and ``json.JSONDecodeError`` are ValueErrors) for anything else.
    """
    data = json.loads(body)
    if isinstance(data, dict) and "detail-type" in data and "detail" in data:
        data = data["detail"]
        if isinstance(data, str):
            data = json.loads(data)
    elif isinstance(data, dict) and data.get("Type") == "Notification" and isinstance(data.get("Message"), str):
        data = json.loads(data["Message"])
    return ChangeEvent.model_validate(data)
