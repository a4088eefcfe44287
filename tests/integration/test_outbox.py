"""Change events: written with the change, published after commit, retried by the relay."""

from __future__ import annotations

import json

from sqlalchemy import select

from okyaku.db.models import OutboxEvent
from okyaku.events.model import ChangeEvent
from okyaku.events.publishers import SqsPublisher
from okyaku.events.relay import relay_pending


def outbox_rows(db, org_id):
    with db.organization_scope(org_id) as session:
        return list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


def test_each_write_publishes_one_event_with_its_details(tenant, publisher, db):
    client = tenant.client
    contact = client.post("/api/v1/contacts", json={"first_name": "Ann", "email": "ann@x.io"}).json()
    client.patch(f"/api/v1/contacts/{contact['id']}", json={"job_title": "VP Sales"})
    client.delete(f"/api/v1/contacts/{contact['id']}")
    events = [e for e in publisher.events if e.entity_type == "contact"]
    assert [(e.operation, e.version) for e in events] == [("created", 1), ("updated", 2), ("deleted", 2)]
    assert events[1].changed_fields == ["job_title"]
    assert {str(e.entity_id) for e in events} == {contact["id"]}
    assert len({e.event_id for e in events}) == 3
    rows = outbox_rows(db, tenant.id)
    assert all(r.published_at is not None for r in rows)


def test_a_failed_write_leaves_no_event(tenant, publisher, db):
    before = len(outbox_rows(db, tenant.id))
    response = tenant.client.post(
        "/api/v1/contacts", json={"first_name": "Bo", "company_id": "00000000-0000-0000-0000-000000000001"}
    )
    assert response.status_code == 422
    duplicate = {"name": "Dup", "external_id": "ext-1"}
    assert tenant.client.post("/api/v1/companies", json=duplicate).status_code == 201
    clash = tenant.client.post("/api/v1/companies", json=duplicate)
    assert clash.status_code == 409
    assert len(outbox_rows(db, tenant.id)) == before + 1  # only the first company's event


def test_failed_publish_keeps_event_pending_and_the_relay_sends_it(tenant, publisher, db):
    publisher.fail_with = ConnectionError("queue unreachable")
    response = tenant.client.post("/api/v1/companies", json={"name": "Pending Inc"})
    assert response.status_code == 201  # the write itself succeeded
    pending = [r for r in outbox_rows(db, tenant.id) if r.published_at is None]
    assert len(pending) == 1 and pending[0].attempts == 1
    assert "queue unreachable" in pending[0].last_error

    publisher.fail_with = None
    with db.organization_scope(tenant.id) as session:  # due now rather than after the backoff
        session.get(OutboxEvent, pending[0].id).next_attempt_at = pending[0].occurred_at
    report = relay_pending(db, publisher)
    assert report.published >= 1
    assert pending[0].event_id in {e.event_id for e in publisher.events}
    assert all(r.published_at is not None for r in outbox_rows(db, tenant.id))
    again = relay_pending(db, publisher)
    assert pending[0].event_id not in {e.event_id for e in publisher.events[len(publisher.events) - again.published :]}


def test_relay_publishes_to_sqs(tenant, publisher, db, sqs, moto_endpoint):
    queue_url = sqs.create_queue(QueueName="okyaku-change-events-test")["QueueUrl"]
    publisher.fail_with = RuntimeError("down")
    for i in range(12):  # more than one SQS batch of 10
        tenant.client.post("/api/v1/companies", json={"name": f"Co {i}"})
    with db.organization_scope(tenant.id) as session:
        for row in session.scalars(select(OutboxEvent).where(OutboxEvent.published_at.is_(None))):
            row.next_attempt_at = row.occurred_at
    report = relay_pending(db, SqsPublisher(queue_url, endpoint_url=moto_endpoint))
    assert report.published == 12 and report.failed == 0
    received = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        messages = batch.get("Messages", [])
        if not messages:
            break
        received.extend(messages)
        sqs.delete_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": m["MessageId"], "ReceiptHandle": m["ReceiptHandle"]} for m in messages]
        )
    events = [ChangeEvent.model_validate(json.loads(m["Body"])) for m in received]
    assert len(events) == 12
    assert {e.organization_id for e in events} == {tenant.id}
    assert received[0]["MessageAttributes"]["entity_type"]["StringValue"] == "company"


def test_relay_keeps_events_when_sqs_is_unreachable(tenant, publisher, db):
    publisher.fail_with = RuntimeError("down")
    tenant.client.post("/api/v1/companies", json={"name": "Lonely"})
    with db.organization_scope(tenant.id) as session:
        for row in session.scalars(select(OutboxEvent).where(OutboxEvent.published_at.is_(None))):
            row.next_attempt_at = row.occurred_at
    dead = SqsPublisher("http://127.0.0.1:9/queue/none", endpoint_url="http://127.0.0.1:9")
    report = relay_pending(db, dead)
    assert report.published == 0 and report.failed >= 1
    pending = [r for r in outbox_rows(db, tenant.id) if r.published_at is None]
    assert len(pending) == 1 and pending[0].attempts == 2


def test_a_failure_after_publishing_does_not_fail_the_committed_write(tenant, db, publisher, monkeypatch):
    """The database blips between publishing and marking: the write stays a success."""
    from okyaku.events import outbox

    calls = {"n": 0}
    real_scope = db.organization_scope

    def flaky_scope(org_id):
        calls["n"] += 1
        if calls["n"] == 2:  # 1: the write itself; 2: marking its events published
            raise ConnectionError("database blip")
        return real_scope(org_id)

    monkeypatch.setattr(db, "organization_scope", flaky_scope)
    with outbox.write_transaction(db, tenant.id, publisher) as session:
        from okyaku.crm.api import companies
        from okyaku.crm.schemas import CompanyCreate

        companies.create(session, CompanyCreate(name="Committed"))
    monkeypatch.undo()
    assert len(publisher.events) == 1
    pending = [r for r in outbox_rows(db, tenant.id) if r.published_at is None]
    assert [r.event_id for r in pending] == [publisher.events[0].event_id]  # the relay will resend it
