"""The schedule fans out one SQS message per organization (moto's SQS), one failing organization
does not hold up the others; e-mails go through SES (moto's), once each, retried on failure, and
the weekly summary carries the digest."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from okyaku.anomalies.service import AnomalyService, ScanReport
from okyaku.anomalies.triggers import make_record_handler, make_schedule_handler
from okyaku.entry import function_handler
from okyaku.runtime import Runtime
from tests.conftest import STAGES

ROOT = Path(__file__).resolve().parents[2]
SENDER = "alerts@okyaku.example"
TUESDAY = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
MONDAY = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class FailsFor(AnomalyService):
    """A fake organization failure: the scan of one organization raises (a crash, a bad row)."""

    def __init__(self, *args: Any, failing: uuid.UUID, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failing = failing
        self.scanned: list[uuid.UUID] = []

    def scan(self, organization_id: uuid.UUID, *, deliver: bool = True) -> ScanReport:
        self.scanned.append(organization_id)
        if organization_id == self.failing:
            raise RuntimeError("boom: this organization's data cannot be read")
        return super().scan(organization_id, deliver=deliver)


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=600).get("Messages", [])
        if not batch:
            return out
        out.extend(batch)


@pytest.fixture
def scan_queue(sqs: Any) -> tuple[str, str]:
    name = f"scans-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def deal_without_amount(tenant: Any, pipeline: dict[str, Any] | None = None) -> None:
    if pipeline is None:
        created = tenant.client.post("/api/v1/pipelines", json={"name": "Sales", "stages": STAGES})
        assert created.status_code == 201, created.text
    response = tenant.client.post("/api/v1/deals", json={"name": "Needs numbers"})
    assert response.status_code == 201, response.text


def test_the_schedule_fans_out_and_a_failing_organization_fails_alone(
    make_tenant: Any, runtime: Runtime, moto_endpoint: str, sqs: Any, scan_queue: tuple[str, str]
) -> None:
    url, arn = scan_queue
    tenants = [make_tenant(name) for name in ("Alpha", "Beta", "Gamma")]
    for tenant in tenants:
        deal_without_amount(tenant)
    settings = runtime.settings.model_copy(update={"anomaly_scan_queue_url": url, "aws_endpoint_url": moto_endpoint})
    service = FailsFor(Runtime(settings, db=runtime.db), failing=tenants[1].id, clock=Clock(TUESDAY))
    handler = function_handler(
        name="anomalies", on_record=make_record_handler(service), on_schedule=make_schedule_handler(service)
    )

    schedule = json.loads((ROOT / "events" / "anomalies" / "schedule.json").read_text())
    report = handler(schedule, None)
    assert report["jobs"] == ["scan"] and report["not_queued"] == []
    assert report["queued"] == report["organizations"] >= 3  # every organization of the database, once
    assert service.scanned == []  # the schedule only queues; scans run from the queue

    messages = drain(sqs, url)
    bodies = [json.loads(m["Body"]) for m in messages]
    assert len(bodies) == report["queued"]
    assert len({b["organization_id"] for b in bodies}) == len(bodies)
    ours = {str(t.id) for t in tenants}
    mine = [m for m, b in zip(messages, bodies, strict=True) if b["organization_id"] in ours]
    assert {json.loads(m["Body"])["job"] for m in mine} == {"scan"} and len(mine) == 3

    result = handler(sqs_event(mine, arn), None)
    failing_message = next(m for m in mine if json.loads(m["Body"])["organization_id"] == str(tenants[1].id))
    assert result == {"batchItemFailures": [{"itemIdentifier": failing_message["MessageId"]}]}
    assert set(service.scanned) == {t.id for t in tenants}
    for tenant in (tenants[0], tenants[2]):  # the others were scanned all the same
        listed, total = service.list_anomalies(tenant.id, type_="data_gap")
        assert total == 1 and listed[0].evidence["missing"] == ["amount", "expected_close_date"]
    assert service.list_anomalies(tenants[1].id)[1] == 0


def test_on_mondays_the_weekly_insights_are_queued_too(
    make_tenant: Any, runtime: Runtime, moto_endpoint: str, sqs: Any, scan_queue: tuple[str, str]
) -> None:
    url, _arn = scan_queue
    tenant = make_tenant("Monday")
    settings = runtime.settings.model_copy(update={"anomaly_scan_queue_url": url, "aws_endpoint_url": moto_endpoint})
    service = AnomalyService(Runtime(settings, db=runtime.db), clock=Clock(MONDAY))
    report = make_schedule_handler(service)({"source": "aws.events", "detail-type": "Scheduled Event"}, None)
    assert report["jobs"] == ["scan", "weekly"] and report["queued"] == 2 * report["organizations"]
    bodies = [json.loads(m["Body"]) for m in drain(sqs, url)]
    assert sorted(b["job"] for b in bodies if b["organization_id"] == str(tenant.id)) == ["scan", "weekly"]


def test_without_a_queue_each_organization_runs_in_process_and_failures_are_reported(
    make_tenant: Any, runtime: Runtime
) -> None:
    tenants = [make_tenant(name) for name in ("Solo", "Broken")]
    for tenant in tenants:
        deal_without_amount(tenant)
    service = FailsFor(runtime, failing=tenants[1].id, clock=Clock(TUESDAY))
    report = make_schedule_handler(service)({"job": "scan"}, None)
    assert [f["organization_id"] for f in report["failed"]] == [str(tenants[1].id)]
    assert report["done"] == report["organizations"] - 1
    assert service.list_anomalies(tenants[0].id)[1] >= 1


# --- e-mail ------------------------------------------------------------------------------------


def sent_to(address: str) -> list[Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    return [m for m in backend.sent_messages if address in m.destinations.get("ToAddresses", [])]


def test_critical_anomalies_are_emailed_once_and_retried_until_ses_takes_them(
    make_tenant: Any, runtime: Runtime, moto_endpoint: str
) -> None:
    import boto3

    ses = boto3.client("ses", endpoint_url=moto_endpoint, region_name="us-east-1")
    sender = f"alerts-{uuid.uuid4().hex[:6]}@okyaku.example"
    tenant = make_tenant("Mail")
    admin_email = f"admin@{tenant.org.organization_id.hex[:8]}.example"
    from sqlalchemy import text

    with runtime.db.organization_scope(tenant.id) as session:  # a unique address per run of the test
        session.execute(text("UPDATE users SET email = :e"), {"e": admin_email})
    assert tenant.client.post("/api/v1/pipelines", json={"name": "Sales", "stages": STAGES}).status_code == 201
    assert (
        tenant.client.post(
            "/api/v1/deals", json={"name": "Forgotten", "amount": "5000", "expected_close_date": "2027-01-01"}
        ).status_code
        == 201
    )

    clock = Clock(datetime.now(UTC) + timedelta(days=70))  # 70 quiet days: 5x the fallback bar
    settings = runtime.settings.model_copy(
        update={"notifications_email_from": sender, "aws_endpoint_url": moto_endpoint}
    )
    service = AnomalyService(Runtime(settings, db=runtime.db), clock=clock)

    report = service.scan(tenant.id)  # the sender is not verified yet: SES refuses
    (stale,) = service.list_anomalies(tenant.id, type_="stale_deal")[0]
    assert stale.severity == "critical"
    assert report.delivery.failed == 1 and report.delivery.sent == 0
    (pending,) = [n for n in service.list_notifications(tenant.id, tenant.org.user_id) if n.anomaly_id == stale.id]
    assert (pending.email_status, pending.email_attempts) == ("pending", 1)
    assert "not verified" in (pending.email_last_error or "")
    assert sent_to(admin_email) == []

    ses.verify_email_identity(EmailAddress=sender)
    assert service.deliver(tenant.id).sent == 0  # not before its backoff is over
    clock.now += timedelta(minutes=3)
    assert service.deliver(tenant.id).as_dict() == {"sent": 1, "failed": 0, "skipped": 0}
    assert service.deliver(tenant.id).sent == 0  # never twice
    service.scan(tenant.id)  # the anomaly is still open: updated, not notified again
    (message,) = sent_to(admin_email)
    assert message.source == sender and "Forgotten" in message.subject and "Critical" in message.subject
    assert "<li><strong>[critical]" in message.body

    # the weekly summary: the data-gap-free week, the rest of the digest (none here) and the narrative
    weekly = service.weekly(tenant.id)
    assert weekly["summaries_queued"] == 1 and weekly["emails"]["sent"] == 1 and weekly["degraded"] is True
    summary = [m for m in sent_to(admin_email) if "Weekly summary" in m.subject]
    assert len(summary) == 1 and "activities this week" in summary[0].body
    again = service.weekly(tenant.id)  # the same week again: the insight is updated, no second e-mail
    assert again["summaries_queued"] == 0 and len(sent_to(admin_email)) == 2


def test_the_weekly_summary_carries_the_digest_and_marks_it_sent(
    make_tenant: Any, runtime: Runtime, moto_endpoint: str
) -> None:
    import boto3

    sender = f"digest-{uuid.uuid4().hex[:6]}@okyaku.example"
    boto3.client("ses", endpoint_url=moto_endpoint, region_name="us-east-1").verify_email_identity(EmailAddress=sender)
    tenant = make_tenant("Digest")
    admin_email = f"digest@{tenant.org.organization_id.hex[:8]}.example"
    from sqlalchemy import text

    with runtime.db.organization_scope(tenant.id) as session:
        session.execute(text("UPDATE users SET email = :e"), {"e": admin_email})
    deal_without_amount(tenant)
    tenant.client.post("/api/v1/contacts", json={"first_name": "No", "last_name": "Mail"})
    settings = runtime.settings.model_copy(
        update={"notifications_email_from": sender, "aws_endpoint_url": moto_endpoint}
    )
    service = AnomalyService(Runtime(settings, db=runtime.db), clock=Clock(datetime.now(UTC)))
    report = service.scan(tenant.id)
    assert report.delivery.sent == 0  # nothing critical: everything waits for the summary
    digest = [n for n in service.list_notifications(tenant.id, tenant.org.user_id) if n.kind == "anomaly"]
    assert len(digest) == 2 and {n.email_status for n in digest} == {"digest"}

    weekly = service.weekly(tenant.id)
    assert weekly["emails"]["sent"] == 1
    (message,) = sent_to(admin_email)
    assert "Your anomalies this week (2)" in message.body
    for notification in digest:
        assert notification.title.replace("'", "&#x27;") in message.body
    after = service.list_notifications(tenant.id, tenant.org.user_id)
    assert {n.email_status for n in after} == {"sent"}
    assert len({n.email_message_id for n in after}) == 1  # the digest went out in the summary's message
