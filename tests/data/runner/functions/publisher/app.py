"""A test HTTP function that writes as the CRM does: it publishes one change event for the entity
named in its path through the runtime's publisher, and answers with the id of its process."""

import os
import uuid
from datetime import UTC, datetime
from typing import Any

from okyaku.config import Settings
from okyaku.events.model import ChangeEvent
from okyaku.runtime import Runtime

_runtime = Runtime(Settings())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    entity_id = uuid.UUID(event["pathParameters"]["id"])
    publisher = _runtime.publisher
    if publisher is None:
        return {"statusCode": 500, "body": "no publisher"}
    change = ChangeEvent(
        event_id=uuid.uuid4(),
        organization_id=uuid.UUID(int=1),
        entity_type="contact",
        entity_id=entity_id,
        operation="created",
        changed_fields=[],
        version=1,
        occurred_at=datetime.now(UTC),
    )
    publisher.publish([change])
    return {"statusCode": 201, "headers": {"x-pid": str(os.getpid())}, "body": str(change.event_id)}
