"""Change events through an EventBridge bus on moto's server: PutEvents in batches of 10, one rule
per consumer routing by entity type to that consumer's queue, and a rejected entry leaving the
whole batch in the outbox for the relay."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from sqlalchemy import select

from okyaku.config import Settings
from okyaku.crm.api import contacts
from okyaku.crm.schemas import ContactCreate
from okyaku.db import Database
from okyaku.db.models import OutboxEvent
from okyaku.events import decode_change_event
from okyaku.events.model import ChangeEvent
from okyaku.events.publishers import EventBridgePublisher, PutEventsClient, publisher_from_settings
from okyaku.events.relay import relay_pending
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization


@dataclass
class Bus:
    name: str
    queues: dict[str, str]  # consumer -> queue URL
    endpoint: str

    def receive(self, consumer: str) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs", endpoint_url=self.endpoint, region_name="us-east-1")
        bodies: list[dict[str, Any]] = []
        while True:
            response = sqs.receive_message(QueueUrl=self.queues[consumer], MaxNumberOfMessages=10)
            messages = response.get("Messages", [])
            if not messages:
                return bodies
            for message in messages:
                bodies.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=self.queues[consumer], ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def bus(moto_endpoint: str) -> Iterator[Bus]:
    """A bus with two consumers' rules, as template.yaml wires them (by boto3 here)."""
    events = boto3.client("events", endpoint_url=moto_endpoint, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"changes-{uuid.uuid4().hex[:8]}"
    events.create_event_bus(Name=name)
    queues = {}
    for consumer, entity_types in (("deals", ["deal"]), ("people", ["contact", "company"])):
        url = sqs.create_queue(QueueName=f"{name}-{consumer}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        pattern = {
            "source": ["okyaku.crm"],
            "detail-type": ["CRM Record Changed"],
            "detail": {"entity_type": entity_types},
        }
        events.put_rule(Name=f"{name}-{consumer}", EventBusName=name, EventPattern=json.dumps(pattern))
        events.put_targets(Rule=f"{name}-{consumer}", EventBusName=name, Targets=[{"Id": consumer, "Arn": arn}])
        queues[consumer] = url
    yield Bus(name, queues, moto_endpoint)
    for consumer in queues:
        events.remove_targets(Rule=f"{name}-{consumer}", EventBusName=name, Ids=[consumer])
        events.delete_rule(Name=f"{name}-{consumer}", EventBusName=name)
    events.delete_event_bus(Name=name)


def change(entity_type: str) -> ChangeEvent:
    return ChangeEvent(
        event_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        entity_type=entity_type,
        entity_id=uuid.uuid4(),
        operation="created",
        changed_fields=[],
        version=1,
        occurred_at=datetime.now(UTC),
    )


def test_events_fan_out_by_entity_type_to_each_consumers_queue(bus: Bus) -> None:
    publisher = publisher_from_settings(Settings(change_events_bus_name=bus.name, aws_endpoint_url=bus.endpoint))
    assert isinstance(publisher, EventBridgePublisher)
    deals = [change("deal") for _ in range(11)]  # more than one PutEvents batch
    people = [change("contact"), change("company")]
    publisher.publish([*deals, *people, change("task")])  # nobody subscribes to tasks

    received = {consumer: bus.receive(consumer) for consumer in bus.queues}
    assert sorted(decode_change_event(json.dumps(b)).event_id for b in received["deals"]) == sorted(
        e.event_id for e in deals
    )
    assert sorted((decode_change_event(json.dumps(b)) for b in received["people"]), key=str) == sorted(people, key=str)
    envelope = received["people"][0]
    assert (envelope["source"], envelope["detail-type"]) == ("okyaku.crm", "CRM Record Changed")


class RejectingSecondEntry:
    """A real EventBridge client whose second entry of a call is malformed (EventBridge rejects
    that entry alone, reporting FailedEntryCount)."""

    def __init__(self, endpoint: str) -> None:
        self._client = boto3.client("events", endpoint_url=endpoint, region_name="us-east-1")
        self.responses: list[Any] = []

    def put_events(self, *, Entries: Sequence[Any]) -> Any:
        entries = [dict(entry) for entry in Entries]
        if len(entries) > 1:
            entries[1]["Detail"] = "not json"
        response = self._client.put_events(Entries=entries)
        self.responses.append(response)
        return response


def test_a_rejected_entry_stays_in_the_outbox_for_the_relay_and_the_accepted_ones_go_once(
    bus: Bus, db: Database
) -> None:
    rejecting = RejectingSecondEntry(bus.endpoint)
    client: PutEventsClient = rejecting
    runtime = Runtime(Settings(), db=db, publisher=EventBridgePublisher(bus.name, client))
    org = create_organization(db, f"Bus {uuid.uuid4().hex[:6]}", "admin@bus.example")
    with runtime.transaction(org.organization_id) as session:
        created = [contacts.create(session, ContactCreate(first_name=f"P{i}")) for i in range(3)]

    assert rejecting.responses[0]["FailedEntryCount"] == 1
    with db.organization_scope(org.organization_id) as session:
        rows = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
        assert len(rows) == 3
        pending = [row for row in rows if row.published_at is None]
        assert [row.entity_id for row in pending] == [created[1].id]  # only the rejected entry
        assert pending[0].attempts == 1 and "MalformedDetail" in (pending[0].last_error or "")
    first = [decode_change_event(json.dumps(b)).entity_id for b in bus.receive("people")]
    assert sorted(first, key=str) == sorted([created[0].id, created[2].id], key=str)

    # The relay publishes the rejected one once EventBridge takes it, and only that one.
    with db.organization_scope(org.organization_id) as session:
        for row in session.scalars(select(OutboxEvent)):
            row.next_attempt_at = datetime.now(UTC)
    report = relay_pending(db, EventBridgePublisher(bus.name, endpoint_url=bus.endpoint))
    assert report.failed == 0 and report.published >= 1  # other tests' organizations may have some too
    delivered = [decode_change_event(json.dumps(b)).entity_id for b in bus.receive("people")]
    assert [delivered.count(c.id) for c in created] == [0, 1, 0]
