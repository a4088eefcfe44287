"""Outgoing e-mail through the outbox, against a real SMTP server (aiosmtpd on a loopback port)
and SES (moto's server): delivery and headers, a reply's threading, a server that is down (retried,
not lost), a 5xx (failed with the reason), two workers racing (sent once), the hourly cap (429), an
approved draft_email sent, and the function's three triggers with their real event shapes."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from okyaku.agents.approvals import ApprovalService
from okyaku.agents.tools.write import DraftEmailArgs
from okyaku.email.api import create_emails_app
from okyaku.email.dispatch import EmailJob, ThreadEmailDispatcher
from okyaku.email.service import EmailService, claim_next
from okyaku.email.transports import SesTransport, SmtpTransport
from okyaku.entry import function_handler
from okyaku.lambda_events import NamedRule, SqsMessage, scheduled_event, sqs_record
from okyaku.local.lambda_host import load_handler_module
from okyaku.local.template import parse_template
from okyaku.runtime import Runtime
from tests.conftest import ROOT, Tenant, free_port
from tests.support.drafts import propose_draft_email
from tests.support.smtp_server import TestSmtpServer


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class RecordingDispatcher:
    """Keeps the jobs: the test decides when the worker runs."""

    def __init__(self) -> None:
        self.jobs: list[EmailJob] = []

    def dispatch(self, job: EmailJob) -> None:
        self.jobs.append(job)


@pytest.fixture(scope="module")
def smtp(owner_db: Any) -> Iterator[TestSmtpServer]:
    server = TestSmtpServer().start()
    yield server
    server.stop()
    # What these tests left waiting (a 4xx, the cap's e-mails) must not be swept by later tests of
    # the session (the function's sample schedule), which have no server for it.
    from sqlalchemy import text

    with owner_db.session() as session:
        session.execute(
            text("UPDATE emails SET status = 'failed', last_error = 'test ended' WHERE status IN ('queued', 'sending')")
        )


def smtp_transport(port: int) -> SmtpTransport:
    return SmtpTransport(host="127.0.0.1", port=port, starttls=False, timeout_s=5)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(runtime: Runtime, smtp: TestSmtpServer, clock: Clock) -> EmailService:
    return smtp_outbox(runtime, smtp.port, clock)


def smtp_outbox(runtime: Runtime, port: int, clock: Clock) -> EmailService:
    """The outbox sending to the SMTP server on ``port``, its jobs recorded (run them by hand)."""
    return EmailService(runtime, transport=smtp_transport(port), dispatcher=RecordingDispatcher(), clock=clock)


def emails_client(service: EmailService, tenant: Tenant) -> TestClient:
    return TestClient(create_emails_app(service), headers={"Authorization": f"Bearer {tenant.org.api_key}"})


def contact(tenant: Tenant, email: str | None = None) -> dict[str, Any]:
    address = email or f"ada-{uuid.uuid4().hex[:8]}@customer.example"
    response = tenant.client.post(
        "/api/v1/contacts", json={"first_name": "Ada", "last_name": "Byron", "email": address}
    )
    assert response.status_code == 201, response.text
    return cast(dict[str, Any], response.json())


def with_settings(runtime: Runtime, **update: Any) -> Runtime:
    """The same database under other settings (a cap, SMTP), publishing nothing."""
    return Runtime(runtime.settings.model_copy(update=update), db=runtime.db, publisher=None)


def admin_email(tenant: Tenant) -> str:
    return f"admin@{tenant.org.organization_id.hex[:10]}.example"


@pytest.fixture
def org(tenant: Tenant, runtime: Runtime) -> Tenant:
    """The tenant, its admin with an address of its own (the From of what it sends)."""
    from sqlalchemy import text

    with runtime.db.organization_scope(tenant.id) as session:
        session.execute(text("UPDATE users SET email = :e"), {"e": admin_email(tenant)})
    return tenant


# --- delivery and headers ---------------------------------------------------------------------------


def test_an_email_is_delivered_with_its_headers_and_a_reply_is_threaded(
    org: Tenant, pipeline: dict[str, Any], runtime: Runtime, smtp: TestSmtpServer, clock: Clock
) -> None:
    threads = ThreadEmailDispatcher(lambda job: service.run_job(job))
    service = EmailService(runtime, transport=smtp_transport(smtp.port), dispatcher=threads, clock=clock)
    client = emails_client(service, org)
    person = contact(org)
    deal = org.client.post("/api/v1/deals", json={"name": "Renewal", "amount": "900"}).json()

    queued = client.post(
        "/api/v1/emails",
        json={
            "contact_id": person["id"],
            "deal_id": deal["id"],
            "subject": "Our proposal",
            "body": "Hello Ada,\n\nAttached.",
        },
    )
    assert queued.status_code == 202, queued.text
    first = queued.json()
    assert first["status"] == "queued" and first["message_id"] is None
    assert threads.wait(10)  # the queue message's worker (a thread here) sent it

    sent = client.get(f"/api/v1/emails/{first['id']}").json()
    assert sent["status"] == "sent" and sent["attempts"] == 1 and sent["error"] is None
    (message,) = smtp.to(person["email"])
    assert message["Message-ID"] == sent["message_id"]
    assert sent["message_id"].endswith(f"@{admin_email(org).split('@')[1]}>")
    assert message["From"] == admin_email(org) == sent["from"]
    assert message["To"] == person["email"] == sent["to"]
    assert message["Subject"] == "Our proposal"
    assert message.get_content().replace("\r\n", "\n").strip() == "Hello Ada,\n\nAttached."
    assert message["In-Reply-To"] is None

    # The e-mail is an outbound email activity on the contact and the deal, with its Message-ID.
    activity = org.client.get(f"/api/v1/activities/{sent['activity_id']}").json()
    assert (activity["type"], activity["direction"], activity["subject"]) == ("email", "outbound", "Our proposal")
    assert (activity["contact_id"], activity["deal_id"]) == (person["id"], deal["id"])
    assert activity["message_id"] == sent["message_id"]
    assert activity["custom_properties"]["email_status"] == "sent"

    # A reply to it, and a reply to the reply: In-Reply-To the parent, References the whole chain.
    clock.now += timedelta(seconds=1)
    reply = client.post(
        "/api/v1/emails",
        json={
            "contact_id": person["id"],
            "subject": "Re: Our proposal",
            "body": "Following up.",
            "reply_to_activity_id": sent["activity_id"],
        },
    ).json()
    assert threads.wait(10)
    reply = client.get(f"/api/v1/emails/{reply['id']}").json()
    clock.now += timedelta(seconds=1)
    again = client.post(
        "/api/v1/emails",
        json={
            "contact_id": person["id"],
            "subject": "Re: Our proposal",
            "body": "Any news?",
            "reply_to_activity_id": reply["activity_id"],
        },
    ).json()
    assert threads.wait(10)
    _, second, third = smtp.to(person["email"])
    assert second["In-Reply-To"] == sent["message_id"] and second["References"] == sent["message_id"]
    assert third["In-Reply-To"] == reply["message_id"]
    assert third["References"].split() == [sent["message_id"], reply["message_id"]]
    assert client.get(f"/api/v1/emails/{again['id']}").json()["in_reply_to"] == reply["message_id"]

    listed = client.get("/api/v1/emails", params={"contact_id": person["id"], "limit": 2}).json()
    assert [e["subject"] for e in listed["data"]] == ["Re: Our proposal", "Re: Our proposal"]
    rest = client.get("/api/v1/emails", params={"contact_id": person["id"], "cursor": listed["next_cursor"]}).json()
    assert [e["id"] for e in rest["data"]] == [first["id"]] and rest["next_cursor"] is None
    assert client.get("/api/v1/emails", params={"status": "failed", "contact_id": person["id"]}).json()["data"] == []


def test_bad_requests_are_refused_with_field_errors(org: Tenant, service: EmailService, runtime: Runtime) -> None:
    client = emails_client(service, org)
    nobody = client.post("/api/v1/emails", json={"contact_id": str(uuid.uuid4()), "subject": "Hi", "body": "x"})
    assert nobody.status_code == 422 and nobody.json()["error"]["details"][0]["field"] == "contact_id"
    no_address = org.client.post("/api/v1/contacts", json={"first_name": "No", "last_name": "Mail"}).json()
    refused = client.post("/api/v1/emails", json={"contact_id": no_address["id"], "subject": "Hi", "body": "x"})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "no_email_address"
    person = contact(org)
    note = org.client.post("/api/v1/activities", json={"type": "note", "body": "not an e-mail"}).json()
    not_email = client.post(
        "/api/v1/emails",
        json={"contact_id": person["id"], "subject": "Re", "body": "x", "reply_to_activity_id": note["id"]},
    )
    assert not_email.status_code == 422 and not_email.json()["error"]["code"] == "not_an_email"
    empty = client.post("/api/v1/emails", json={"contact_id": person["id"], "subject": "", "body": "x"})
    assert empty.status_code == 422
    assert client.get(f"/api/v1/emails/{uuid.uuid4()}").status_code == 404
    assert client.get("/api/v1/emails", params={"cursor": "garbage"}).status_code == 422
    # nothing half-made: no e-mail, no activity for the refused requests
    assert client.get("/api/v1/emails").json()["data"] == []
    activities = org.client.get("/api/v1/activities", params={"type": "email"}).json()["data"]
    assert activities == []


def test_a_line_break_in_the_subject_cannot_add_a_header_or_a_recipient(
    org: Tenant, service: EmailService, smtp: TestSmtpServer
) -> None:
    person = contact(org)
    queued = emails_client(service, org).post(
        "/api/v1/emails",
        json={"contact_id": person["id"], "subject": "Hello\r\nBcc: someone@else.example", "body": "x"},
    )
    assert queued.status_code == 202, queued.text
    assert service.deliver(org.id).status == "sent"  # type: ignore[union-attr]
    (caught,) = [m for m in smtp.messages if person["email"] in m.rcpt_tos]
    assert caught.rcpt_tos == (person["email"],)
    assert caught.message["Subject"] == "Hello Bcc: someone@else.example" and caught.message["Bcc"] is None


# --- failures ------------------------------------------------------------------------------------


def test_a_server_that_is_down_is_retried_with_the_same_message_id_and_nothing_is_lost(
    org: Tenant, service: EmailService, smtp: TestSmtpServer, clock: Clock
) -> None:
    client = emails_client(service, org)
    person = contact(org)
    service._transport = smtp_transport(free_port())  # nothing listens there: connection refused
    queued = client.post("/api/v1/emails", json={"contact_id": person["id"], "subject": "Hi", "body": "Hello"}).json()

    first = service.deliver(org.id, queued["id"])
    assert first is not None and first.status == "queued"
    shown = client.get(f"/api/v1/emails/{queued['id']}").json()
    assert shown["status"] == "queued" and shown["attempts"] == 1 and "unavailable" in shown["error"]
    assert shown["next_attempt_at"] is not None
    assert service.deliver(org.id, queued["id"]) is None  # not before its backoff is over
    clock.now += timedelta(seconds=service.settings.email_retry_base_s)
    second = service.deliver(org.id)
    assert second is not None and second.status == "queued"  # still down: the backoff doubles
    clock.now += timedelta(seconds=service.settings.email_retry_base_s)
    assert service.deliver(org.id) is None

    service._transport = smtp_transport(smtp.port)  # the server is back
    clock.now += timedelta(seconds=service.settings.email_retry_base_s)
    assert service.deliver_due(org.id).as_dict() == {"sent": 1, "retrying": 0, "failed": 0}
    sent = client.get(f"/api/v1/emails/{queued['id']}").json()
    assert sent["status"] == "sent" and sent["attempts"] == 3 and sent["error"] is None
    (message,) = smtp.to(person["email"])
    assert message["Message-ID"] == sent["message_id"]  # generated once, before the first attempt
    assert service.deliver_due(org.id).sent == 0  # never twice


def test_transient_failures_give_up_after_the_last_attempt(org: Tenant, runtime: Runtime, clock: Clock) -> None:
    service = smtp_outbox(with_settings(runtime, email_max_attempts=2), free_port(), clock)  # nobody listens
    person = contact(org)
    queued = (
        emails_client(service, org)
        .post("/api/v1/emails", json={"contact_id": person["id"], "subject": "Hi", "body": "x"})
        .json()
    )
    assert service.deliver(org.id).status == "queued"  # type: ignore[union-attr]
    clock.now += timedelta(hours=1)
    failed = service.deliver(org.id)
    assert failed is not None and failed.status == "failed"
    shown = service.get(org.id, uuid.UUID(queued["id"]))
    assert shown.status == "failed" and shown.last_error and shown.last_error.startswith("gave up after 2 attempts")


def test_a_5xx_fails_the_email_with_the_reason_and_a_4xx_is_retried(
    org: Tenant, service: EmailService, smtp: TestSmtpServer
) -> None:
    client = emails_client(service, org)
    gone, busy = contact(org), contact(org)
    smtp.handler.refuse[gone["email"]] = "550 5.1.1 No such mailbox here"
    smtp.handler.refuse[busy["email"]] = "451 4.3.0 Try again later"
    for person in (gone, busy):
        client.post("/api/v1/emails", json={"contact_id": person["id"], "subject": "Hi", "body": "x"})
    report = service.deliver_due(org.id)
    assert report.as_dict() == {"sent": 0, "retrying": 1, "failed": 1}

    (failed,) = client.get("/api/v1/emails", params={"status": "failed"}).json()["data"]
    assert failed["to"] == gone["email"] and "550" in failed["error"] and "No such mailbox" in failed["error"]
    activity = org.client.get(f"/api/v1/activities/{failed['activity_id']}").json()
    assert activity["custom_properties"]["email_status"] == "failed"
    assert "550" in activity["custom_properties"]["email_error"]
    (waiting,) = client.get("/api/v1/emails", params={"status": "queued"}).json()["data"]
    assert waiting["to"] == busy["email"] and "451" in waiting["error"] and waiting["attempts"] == 1
    assert smtp.to(gone["email"]) == [] and smtp.to(busy["email"]) == []


def test_a_bad_reply_to_quit_after_the_message_was_accepted_does_not_send_it_again(
    org: Tenant, service: EmailService, smtp: TestSmtpServer
) -> None:
    """The server took the message (250 after DATA), then answered QUIT with an error: it is sent;
    retrying would deliver a second copy, failing it would say it never left."""
    person = contact(org)
    client = emails_client(service, org)
    for reply in ("421 4.4.2 closing the connection", "554 5.0.0 goodbye"):
        queued = client.post("/api/v1/emails", json={"contact_id": person["id"], "subject": reply, "body": "x"})
        smtp.handler.quit_reply = reply
        try:
            outcome = service.deliver(org.id, uuid.UUID(queued.json()["id"]))
        finally:
            smtp.handler.quit_reply = None
        assert outcome is not None and outcome.status == "sent", outcome
    assert service.deliver_due(org.id).as_dict() == {"sent": 0, "retrying": 0, "failed": 0}
    subjects = sorted(m["Subject"] for m in smtp.to(person["email"]))
    assert subjects == ["421 4.4.2 closing the connection", "554 5.0.0 goodbye"]  # each once


def test_a_notification_whose_title_has_a_line_break_is_sent_on_one_subject_line(smtp: TestSmtpServer) -> None:
    """An anomaly's title carries a record's name, which may hold a line break (the CRM strips only
    its ends): the notification goes out with it folded into one line, not refused for ever."""
    from okyaku.anomalies.mail import Email
    from okyaku.email.transports import TransportMailer

    to = f"owner-{uuid.uuid4().hex[:8]}@okyaku.example"
    mailer = TransportMailer("alerts@okyaku.example", smtp_transport(smtp.port))
    mailer.send(
        Email(to=to, subject="[Okyaku] High: No activity on Aurora\r\nBcc: x@else.example", html="<p>x</p>", text="x")
    )
    (message,) = smtp.to(to)
    assert message["Subject"] == "[Okyaku] High: No activity on Aurora Bcc: x@else.example" and message["Bcc"] is None


# --- never twice --------------------------------------------------------------------------------------


def test_two_workers_racing_send_each_email_once(
    org: Tenant, runtime: Runtime, smtp: TestSmtpServer, clock: Clock
) -> None:
    workers = [smtp_outbox(runtime, smtp.port, clock) for _ in range(2)]
    client = emails_client(workers[0], org)
    people = [contact(org) for _ in range(4)]
    ids = [
        client.post("/api/v1/emails", json={"contact_id": p["id"], "subject": f"Race {i}", "body": "x"}).json()["id"]
        for i, p in enumerate(people)
    ]
    outcomes: list[list[Any]] = [[], []]
    start = threading.Barrier(2)

    def work(index: int) -> None:
        start.wait()
        for email_id in ids:  # both go for the same e-mail at the same moment
            outcomes[index].append(workers[index].deliver(org.id, uuid.UUID(email_id)))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for position in range(len(ids)):
        done = [o for o in (outcomes[0][position], outcomes[1][position]) if o is not None]
        assert len(done) == 1 and done[0].status == "sent"  # one worker sent it, the other found it taken
    for person in people:
        assert len(smtp.to(person["email"])) == 1


def test_an_email_left_sending_by_a_dead_worker_is_sent_again_after_its_lease(
    org: Tenant, service: EmailService, smtp: TestSmtpServer, clock: Clock
) -> None:
    person = contact(org)
    queued = (
        emails_client(service, org)
        .post("/api/v1/emails", json={"contact_id": person["id"], "subject": "Lease", "body": "x"})
        .json()
    )
    with service.runtime.db.organization_scope(org.id) as session:  # a worker claims it, then dies
        claimed = claim_next(session, clock(), timedelta(seconds=service.settings.email_send_lease_s))
    assert claimed is not None and str(claimed.id) == queued["id"]
    assert service.get(org.id, claimed.id).status == "sending"
    assert service.deliver(org.id) is None  # another worker leaves it while the lease runs
    clock.now += timedelta(seconds=service.settings.email_send_lease_s + 1)
    outcome = service.deliver(org.id)
    assert outcome is not None and outcome.status == "sent"
    (message,) = smtp.to(person["email"])
    assert message["Message-ID"] == claimed.message_id


def test_an_email_whose_workers_keep_dying_is_given_up_after_the_last_attempt(
    org: Tenant, runtime: Runtime, smtp: TestSmtpServer, clock: Clock
) -> None:
    """A worker killed mid-send (a Lambda timeout, out of memory) never settles: each lease expiry
    would send it again, for ever. After EMAIL_MAX_ATTEMPTS claims it is failed, not sent again."""
    service = smtp_outbox(with_settings(runtime, email_max_attempts=2), smtp.port, clock)
    person = contact(org)
    queued = (
        emails_client(service, org)
        .post("/api/v1/emails", json={"contact_id": person["id"], "subject": "Poison", "body": "x"})
        .json()
    )
    lease = timedelta(seconds=service.settings.email_send_lease_s)
    for _ in range(2):  # two workers claim it and die before settling
        with service.runtime.db.organization_scope(org.id) as session:
            assert claim_next(session, clock(), lease) is not None
        clock.now += lease + timedelta(seconds=1)
    outcome = service.deliver(org.id)
    assert outcome is not None and outcome.status == "failed"
    shown = service.get(org.id, uuid.UUID(queued["id"]))
    assert shown.status == "failed" and shown.attempts == 2 and "outcome is unknown" in (shown.last_error or "")
    assert smtp.to(person["email"]) == []  # not a third send
    activity = org.client.get(f"/api/v1/activities/{queued['activity_id']}").json()
    assert activity["custom_properties"]["email_status"] == "failed"
    assert service.deliver_due(org.id).as_dict() == {"sent": 0, "retrying": 0, "failed": 0}


def test_a_contact_address_that_names_a_second_recipient_is_refused(
    org: Tenant, service: EmailService, smtp: TestSmtpServer
) -> None:
    """The contact schema accepts ``a@b.example,postmaster`` (no space, one @); as a To header that
    is two recipients. The outbox sends to exactly the contact's one address, or refuses."""
    person = contact(org, f"ada-{uuid.uuid4().hex[:8]}@customer.example,postmaster")  # the CRM API takes it
    client = emails_client(service, org)
    refused = client.post("/api/v1/emails", json={"contact_id": person["id"], "subject": "Hi", "body": "x"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_recipient"
    assert client.get("/api/v1/emails", params={"contact_id": person["id"]}).json()["data"] == []
    assert service.deliver_due(org.id).sent == 0 and smtp.to("postmaster") == []


# --- the hourly cap --------------------------------------------------------------------------------


def test_the_hourly_cap_answers_429_with_a_machine_readable_body(
    org: Tenant, make_tenant: Any, runtime: Runtime, smtp: TestSmtpServer, clock: Clock
) -> None:
    service = smtp_outbox(with_settings(runtime, email_hourly_limit=2), smtp.port, clock)
    client = emails_client(service, org)
    person = contact(org)
    body = {"contact_id": person["id"], "subject": "Hi", "body": "x"}
    assert [client.post("/api/v1/emails", json=body).status_code for _ in range(2)] == [202, 202]
    refused = client.post("/api/v1/emails", json=body)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "email_hourly_limit"
    assert error["details"]["limit"] == 2 and error["details"]["queued_in_window"] == 2
    assert 3500 <= int(refused.headers["Retry-After"]) <= 3601
    assert len(client.get("/api/v1/emails").json()["data"]) == 2  # the refused one left nothing behind

    other = make_tenant("Other")
    other_person = contact(other)
    assert (
        emails_client(service, other)
        .post("/api/v1/emails", json={"contact_id": other_person["id"], "subject": "Hi", "body": "x"})
        .status_code
        == 202
    )  # another organization's hour is its own
    clock.now += timedelta(hours=1, seconds=1)
    assert client.post("/api/v1/emails", json=body).status_code == 202


def test_the_hourly_cap_holds_when_two_requests_queue_at_the_same_moment(
    org: Tenant, runtime: Runtime, owner_db: Any, clock: Clock
) -> None:
    """With one e-mail left in the hour, a second request that arrives while the first is still
    uncommitted waits for it (the advisory lock), then counts it: 429, not a second e-mail."""
    import time

    from sqlalchemy import text

    from okyaku.email.service import EmailDraft, queue_email
    from okyaku.errors import RateLimited

    capped = with_settings(runtime, email_hourly_limit=1)
    service = EmailService(capped, dispatcher=RecordingDispatcher(), clock=clock)
    person = contact(org)
    draft = EmailDraft(contact_id=uuid.UUID(person["id"]), subject="Hi", body="x")
    queued, release = threading.Event(), threading.Event()
    second: list[object] = []

    def first_request() -> None:
        with capped.transaction(org.id) as session:
            queue_email(session, capped.settings, draft, user_id=org.org.user_id, now=clock())
            queued.set()
            release.wait(30)  # still uncommitted while the second request arrives

    def second_request() -> None:
        try:
            second.append(service.queue(org.id, org.org.user_id, draft))
        except RateLimited as error:
            second.append(error)

    first = threading.Thread(target=first_request)
    first.start()
    assert queued.wait(30)
    other = threading.Thread(target=second_request)
    other.start()
    deadline = time.monotonic() + 15
    waiting = 0
    while time.monotonic() < deadline and not second:  # the second request blocks on the lock
        with owner_db.session() as session:
            waiting = session.scalar(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))
        if waiting:
            break
        time.sleep(0.02)
    release.set()
    first.join(30)
    other.join(30)
    assert waiting == 1, f"the second request did not wait for the first: {second}"
    assert len(second) == 1 and isinstance(second[0], RateLimited) and second[0].code == "email_hourly_limit"
    assert len(service.list(org.id, EmailDraftFilters(contact_id=person["id"]))[0]) == 1


# --- approved drafts ---------------------------------------------------------------------------------


def test_an_approved_draft_email_is_sent_once_through_the_outbox(
    org: Tenant, runtime: Runtime, smtp: TestSmtpServer, clock: Clock
) -> None:
    hosted = with_settings(runtime, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False)
    approvals = ApprovalService(hosted, clock=clock)  # the default: a worker thread, SMTP from the settings
    person = contact(org)
    args = DraftEmailArgs(
        contact_id=uuid.UUID(person["id"]),
        subject="Next steps",
        body="Hi Ada, shall we meet?",
        reasoning="no reply in 2 weeks",
    )
    action = propose_draft_email(hosted, approvals, org.id, args, requested_by=org.org.user_id, clock=clock)
    service = EmailService(hosted, dispatcher=RecordingDispatcher(), clock=clock)
    assert service.list(org.id, EmailDraftFilters())[0] == []  # nothing is sent before approval

    approved = approvals.approve(org.id, action.id, reviewer_id=org.org.user_id)
    email_id = uuid.UUID(approved.result["email_id"])
    email = wait_until_settled(service, org.id, email_id)
    assert email.status == "sent" and email.pending_action_id == action.id
    assert email.sender == admin_email(org)  # from whoever asked for it
    (message,) = smtp.to(person["email"])
    assert message["Subject"] == "Next steps" and message["Message-ID"] == email.message_id
    activity = org.client.get(f"/api/v1/activities/{approved.result['entity_id']}").json()
    assert activity["message_id"] == email.message_id and activity["custom_properties"]["email_status"] == "sent"

    again = approvals.approve(org.id, action.id, reviewer_id=org.org.user_id)  # approved twice: sent once
    assert again.result == approved.result
    assert service.deliver_due(org.id).sent == 0 and len(smtp.to(person["email"])) == 1


def test_approving_a_draft_beyond_the_hourly_cap_answers_429_and_leaves_it_pending(
    org: Tenant, runtime: Runtime, smtp: TestSmtpServer, clock: Clock
) -> None:
    from okyaku.errors import RateLimited

    capped = with_settings(runtime, email_hourly_limit=1)
    kicked: list[uuid.UUID] = []
    approvals = ApprovalService(capped, clock=clock, on_email_queued=lambda _org, email_id: kicked.append(email_id))
    service = smtp_outbox(capped, smtp.port, clock)
    person = contact(org)
    assert (
        emails_client(service, org)
        .post("/api/v1/emails", json={"contact_id": person["id"], "subject": "First", "body": "x"})
        .status_code
        == 202
    )
    args = DraftEmailArgs(contact_id=uuid.UUID(person["id"]), subject="Second", body="y", reasoning="a follow-up")
    action = propose_draft_email(capped, approvals, org.id, args, clock=clock)
    with pytest.raises(RateLimited) as refused:
        approvals.approve(org.id, action.id, reviewer_id=org.org.user_id)
    assert refused.value.code == "email_hourly_limit"
    assert approvals.get(org.id, action.id).status == "pending"  # not failed: approve it again later
    emails = org.client.get("/api/v1/activities", params={"type": "email", "contact_id": person["id"]}).json()
    assert [a["subject"] for a in emails["data"]] == ["First"]  # the refused approval created nothing
    assert kicked == []

    clock.now += timedelta(hours=1, seconds=1)
    approved = approvals.approve(org.id, action.id, reviewer_id=org.org.user_id)
    assert approved.status == "approved" and kicked == [uuid.UUID(approved.result["email_id"])]


def EmailDraftFilters(contact_id: str | None = None) -> Any:
    from okyaku.email.service import EmailFilters

    return EmailFilters(contact_id=uuid.UUID(contact_id) if contact_id else None)


def wait_until_settled(service: EmailService, organization_id: uuid.UUID, email_id: uuid.UUID) -> Any:
    """The worker thread's result: poll the outbox row (no sleep-and-hope) until it is settled."""
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        email = service.get(organization_id, email_id)
        if email.status in ("sent", "failed"):
            return email
        time.sleep(0.05)
    raise AssertionError(f"e-mail {email_id} still {email.status}")


# --- SES (moto) ----------------------------------------------------------------------------------------

SES_REGION = "eu-west-1"


def test_ses_sends_the_raw_message_and_a_refused_sender_fails_with_the_reason(
    org: Tenant, runtime: Runtime, moto_endpoint: str, clock: Clock
) -> None:
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    service = EmailService(
        runtime,
        # a region of its own: moto keeps SES's sent messages per region (the anomaly tests read us-east-1's)
        transport=SesTransport(endpoint_url=moto_endpoint, region=SES_REGION),
        dispatcher=RecordingDispatcher(),
        clock=clock,
    )
    client = emails_client(service, org)
    person = contact(org)
    first = client.post("/api/v1/emails", json={"contact_id": person["id"], "subject": "SES", "body": "x"}).json()
    assert service.deliver(org.id).status == "failed"  # type: ignore[union-attr]
    refused = client.get(f"/api/v1/emails/{first['id']}").json()
    assert refused["status"] == "failed" and "MessageRejected" in refused["error"]

    boto3.client("ses", endpoint_url=moto_endpoint, region_name=SES_REGION).verify_email_identity(
        EmailAddress=admin_email(org)
    )
    queued = client.post(
        "/api/v1/emails",
        json={
            "contact_id": person["id"],
            "subject": "SES again",
            "body": "Hello",
            "reply_to_activity_id": first["activity_id"],
        },
    ).json()
    assert service.deliver(org.id).status == "sent"  # type: ignore[union-attr]
    sent = service.get(org.id, uuid.UUID(queued["id"]))
    assert sent.transport == "ses" and sent.provider_message_id
    backend = ses_backends[DEFAULT_ACCOUNT_ID][SES_REGION]
    (raw,) = [m for m in backend.sent_messages if getattr(m, "id", None) == sent.provider_message_id]
    assert sent.message_id in raw.raw_data and f"In-Reply-To: {refused_message_id(service, org, first)}" in raw.raw_data


def refused_message_id(service: EmailService, org: Tenant, email: dict[str, Any]) -> str:
    return service.get(org.id, uuid.UUID(email["id"])).message_id


# --- the function's triggers -----------------------------------------------------------------------------


def http_event(method: str, path: str, api_key: str, body: Any = None, query: str = "") -> dict[str, Any]:
    from okyaku.lambda_events import build_http_event

    return build_http_event(
        f"{method} {path.split('/emails')[0]}/emails" + ("/{proxy+}" if path.count("/") > 3 else ""),
        {},
        method=method,
        raw_path=path,
        raw_query=query,
        headers=[("authorization", f"Bearer {api_key}"), ("content-type", "application/json")],
        body=b"" if body is None else json.dumps(body).encode(),
        source_ip="127.0.0.1",
    )


def test_the_function_queues_over_http_sends_on_its_queue_message_and_sweeps_on_schedule(
    org: Tenant, service: EmailService, smtp: TestSmtpServer, clock: Clock
) -> None:
    handler = function_handler(
        name="emails", http=create_emails_app(service), on_record=service.on_record, on_schedule=service.sweep
    )
    person = contact(org)
    response = handler(
        http_event(
            "POST", "/api/v1/emails", org.org.api_key, {"contact_id": person["id"], "subject": "Fn", "body": "x"}
        ),
        None,
    )
    assert response["statusCode"] == 202, response
    email_id = json.loads(response["body"])["id"]
    dispatcher = cast(RecordingDispatcher, service.dispatcher)
    (job,) = dispatcher.jobs
    assert job.email_id == uuid.UUID(email_id)

    message = SqsMessage(message_id="m-1", body=job.model_dump_json(), message_attributes={}, sent_at_ms=0)
    bad = SqsMessage(message_id="m-2", body='{"job": "send"}', message_attributes={}, sent_at_ms=0)
    event = {"Records": [sqs_record(message, "EmailQueue"), sqs_record(bad, "EmailQueue")]}
    assert handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert len(smtp.to(person["email"])) == 1
    assert handler({"Records": [sqs_record(message, "EmailQueue")]}, None) == {"batchItemFailures": []}
    assert len(smtp.to(person["email"])) == 1  # the message delivered again: not sent again

    shown = handler(http_event("GET", f"/api/v1/emails/{email_id}", org.org.api_key), None)
    assert json.loads(shown["body"])["status"] == "sent"

    # a queue message lost: the schedule's sweep sends what is due
    lost = emails_client(service, org).post(
        "/api/v1/emails", json={"contact_id": person["id"], "subject": "Lost", "body": "x"}
    )
    assert lost.status_code == 202
    report = handler(scheduled_event(NamedRule("okyaku-emails-sweep"), clock()), None)
    assert report["sent"] >= 1 and report["organizations_failed"] == []
    assert [m["Subject"] for m in smtp.to(person["email"])] == ["Fn", "Lost"]


def test_the_template_wires_the_function_with_its_queue_schedule_and_ses_permission() -> None:
    template = parse_template(ROOT / "template.yaml")
    spec = template.functions["EmailsFunction"]
    assert spec.module_file == ROOT / "functions" / "emails" / "app.py"
    routes = {r.route_key for r in template.routes if r.function_id == "EmailsFunction"}
    assert {"ANY /api/v1/emails", "ANY /api/v1/emails/{proxy+}"} <= routes
    assert any(s.function_id == "EmailsFunction" for s in template.sqs_sources)
    assert any(s.function_id == "EmailsFunction" for s in template.schedules)
    raw = (ROOT / "template.yaml").read_text()
    block = raw.split("  EmailsFunction:")[1].split("\n  # ")[0]
    assert "ses:SendRawEmail" in block and "ses:SendEmail" in block
    module = load_handler_module(spec)  # imports as Lambda would (no database touched at import)
    assert callable(module.handler)
    assert Path(module.__file__).name == "app.py"  # type: ignore[arg-type]


# --- okyaku dev's local catcher -------------------------------------------------------------------------


def test_okyaku_dev_catches_every_email_locally_unless_smtp_host_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from email.message import EmailMessage

    from okyaku.anomalies.mail import anomaly_email, notification_mailer
    from okyaku.cli.dev import _local_mail
    from okyaku.config import Settings
    from okyaku.email.transports import TransportMailer, transport_from_settings

    for name in ("SMTP_HOST", "SMTP_PORT", "SMTP_STARTTLS", "EMAIL_TRANSPORT", "NOTIFICATIONS_EMAIL_FROM"):
        monkeypatch.setenv(name, "")  # restored (removed) after the test, whatever _local_mail sets
        monkeypatch.delenv(name)
    catcher = _local_mail(tmp_path)
    try:
        settings = Settings()
        transport = transport_from_settings(settings)
        assert isinstance(transport, SmtpTransport)
        assert (transport.host, transport.port, transport.starttls) == ("127.0.0.1", catcher.port, False)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "rep@ours.example", "real@person.example", "Hello"
        message.set_content("Nobody receives this.")
        transport.send(message)
        # the anomaly notifications go the same way, from NOTIFICATIONS_EMAIL_FROM's local default
        mailer = notification_mailer(settings)
        assert isinstance(mailer, TransportMailer) and mailer.sender == "okyaku@localhost"
        mailer.send(anomaly_email("admin@ours.example", "critical", "Deal gone quiet", "No touch in 70 days"))
        caught = catcher.messages
        assert [m.rcpt_tos for m in caught] == [("real@person.example",), ("admin@ours.example",)]
        assert caught[1].message.get_body(("html",)) is not None  # HTML with its text alternative
        files = sorted((tmp_path / "mail").glob("*.eml"))
        assert len(files) == 2 and b"Subject: Hello" in files[0].read_bytes()
    finally:
        catcher.stop()

    monkeypatch.setenv("SMTP_HOST", "smtp.example.org")
    assert _local_mail(tmp_path / "other") is None  # a real server: no catcher
