"""Mailbox sync against a real IMAP server (Dovecot, tests/support/dovecot.py) and real Postgres:
messages are put in with IMAP APPEND, the sync runs through the mailboxes function's handler with
real event shapes (EventBridge's scheduled event, SQS records) or its HTTP API."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import select

from okyaku.agents.models import PendingAction
from okyaku.anomalies.models import Notification
from okyaku.clock import utc_now
from okyaku.config import Settings
from okyaku.crm.entities import ENTITIES
from okyaku.crm.schemas import ContactCreate, DealCreate, PipelineCreate
from okyaku.db import Database
from okyaku.db.models import Activity, Contact, User
from okyaku.entry import function_handler
from okyaku.events.model import ChangeEvent
from okyaku.local.postgres import LocalDatabase
from okyaku.mailboxes.api import create_mailboxes_app
from okyaku.mailboxes.models import Mailbox
from okyaku.mailboxes.secrets import decrypt_password
from okyaku.mailboxes.service import MailboxService
from okyaku.mailboxes.store import SyncedEmail
from okyaku.mailboxes.triggers import make_record_handler, make_schedule_handler
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization
from tests.conftest import STAGES, RecordingPublisher
from tests.support.dovecot import Dovecot, running_dovecot

EVENTS = Path(__file__).resolve().parents[2] / "events" / "mailboxes"
KEY = Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot(Path(tempfile.mkdtemp(prefix="okyaku-dovecot-"))) as server:
        yield server


@pytest.fixture
def mail_settings(pg: LocalDatabase) -> Settings:
    return Settings(database_url=pg.app_url, database_migration_url=pg.owner_url, mailbox_encryption_key=KEY)


@dataclass
class Env:
    runtime: Runtime
    service: MailboxService
    publisher: RecordingPublisher
    handler: Any
    dovecot: Dovecot
    db: Database

    def events_for(self, activity_id: uuid.UUID) -> list[ChangeEvent]:
        return [e for e in self.publisher.events if e.entity_type == "activity" and e.entity_id == activity_id]


@pytest.fixture
def env(mail_settings: Settings, db: Database, publisher: RecordingPublisher, dovecot: Dovecot) -> Env:
    runtime = Runtime(mail_settings, db=db, publisher=publisher)
    service = MailboxService(runtime)
    # The function's own wiring (functions/mailboxes/app.py) around this test's service.
    handler = function_handler(
        name="mailboxes",
        http=create_mailboxes_app(service),
        on_record=make_record_handler(service),
        on_schedule=make_schedule_handler(service),
    )
    return Env(runtime, service, publisher, handler, dovecot, db)


@dataclass
class Account:
    """An organization, one of its users with an API client, and that user's IMAP account."""

    organization_id: uuid.UUID
    user_id: uuid.UUID
    client: TestClient
    address: str
    password: str
    domain: str

    def connect(self, **overrides: Any) -> dict[str, Any]:
        body = {
            "imap_host": "127.0.0.1",
            "imap_port": overrides.pop("port"),
            "tls_mode": "none",
            "username": self.address,
            "password": self.password,
            **overrides,
        }
        response = self.client.post("/api/v1/mailboxes", json=body)
        assert response.status_code == 201, response.text
        return dict(response.json())


def make_account(env: Env, *, user: str = "rep") -> Account:
    domain = f"acme-{uuid.uuid4().hex[:6]}.example"
    org = create_organization(env.db, "Acme", f"{user}@{domain}")
    address = f"{user}@{domain}"
    password = f"pw-{uuid.uuid4().hex[:8]}"
    env.dovecot.add_user(address, password)
    client = TestClient(create_mailboxes_app(env.service), headers={"Authorization": f"Bearer {org.api_key}"})
    return Account(org.organization_id, org.user_id, client, address, password, domain)


def mail(
    *,
    sender: str,
    to: str,
    subject: str,
    body: str = "Hello",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    html: str | None = None,
    attachment: tuple[str, bytes, str] | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    message = EmailMessage()
    for name, value in (headers or {}).items():
        message[name] = value
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(utc_now())
    message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@mail.example>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    if html is not None:
        message.set_content(html, subtype="html")
    else:
        message.set_content(body)
    if attachment is not None:
        name, data, content_type = attachment
        maintype, subtype = content_type.split("/")
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message.as_bytes()


def add_contact(env: Env, account: Account, email: str, first_name: str = "Alice") -> uuid.UUID:
    with env.runtime.transaction(account.organization_id) as session:
        contact = ENTITIES["contact"].service.create(session, ContactCreate(first_name=first_name, email=email))
        return uuid.UUID(str(contact.id))


def activities(env: Env, account: Account) -> list[Activity]:
    with env.db.organization_scope(account.organization_id) as session:
        rows = list(session.scalars(select(Activity).order_by(Activity.occurred_at, Activity.created_at)))
        session.expunge_all()
        return rows


def schedule_event() -> dict[str, Any]:
    return dict(json.loads((EVENTS / "schedule.json").read_text()))


def sqs_event(*bodies: str) -> dict[str, Any]:
    template = json.loads((EVENTS / "sqs_mailbox_sync.json").read_text())["Records"][0]
    return {"Records": [{**template, "messageId": str(uuid.uuid4()), "body": body} for body in bodies]}


def sync_job(account: Account, mailbox_id: str) -> str:
    return json.dumps(
        {"job": "mailbox_sync", "organization_id": str(account.organization_id), "mailbox_id": mailbox_id}
    )


# --- connections --------------------------------------------------------------------------------


def test_the_password_is_stored_encrypted_and_never_returned(env: Env) -> None:
    account = make_account(env)
    created = account.connect(port=env.dovecot.port)
    assert "password" not in created and "password_encrypted" not in created
    assert created["status"] == "pending" and created["folders"] == ["INBOX", "\\Sent"]
    for response in (
        account.client.get("/api/v1/mailboxes"),
        account.client.get(f"/api/v1/mailboxes/{created['id']}"),
        account.client.patch(f"/api/v1/mailboxes/{created['id']}", json={"password": "new-secret"}),
    ):
        assert response.status_code == 200, response.text
        assert account.password not in response.text and "new-secret" not in response.text
        assert "password" not in response.text
    with env.db.organization_scope(account.organization_id) as session:
        stored = session.get(Mailbox, uuid.UUID(created["id"]))
        assert stored is not None
        assert "new-secret" not in stored.password_encrypted
        assert decrypt_password(env.runtime.settings, stored.password_encrypted) == "new-secret"

    # Another user of the organization does not see it.
    with env.db.organization_scope(account.organization_id) as session:
        session.add(User(email=f"other@{account.domain}", name="Other"))
    assert account.client.get(f"/api/v1/mailboxes/{uuid.uuid4()}").status_code == 404

    # The same account twice is a conflict; TLS off only to a loopback server.
    again = account.client.post(
        "/api/v1/mailboxes",
        json={
            "imap_host": "127.0.0.1",
            "imap_port": 1,
            "tls_mode": "none",
            "username": account.address,
            "password": "x",
        },
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "mailbox_exists"
    clear = account.client.post(
        "/api/v1/mailboxes",
        json={"imap_host": "imap.example.com", "tls_mode": "none", "username": "a@b.example", "password": "x"},
    )
    assert clear.status_code == 422 and clear.json()["error"]["code"] == "validation_error"

    deleted = account.client.delete(f"/api/v1/mailboxes/{created['id']}")
    assert deleted.status_code == 204
    assert account.client.get(f"/api/v1/mailboxes/{created['id']}").status_code == 404


def test_without_the_encryption_key_connecting_is_a_clear_503(pg: LocalDatabase, db: Database) -> None:
    runtime = Runtime(Settings(database_url=pg.app_url, mailbox_encryption_key=""), db=db)
    org = create_organization(db, "NoKey", "rep@nokey.example")
    client = TestClient(
        create_mailboxes_app(MailboxService(runtime)), headers={"Authorization": f"Bearer {org.api_key}"}
    )
    response = client.post(
        "/api/v1/mailboxes",
        json={"imap_host": "imap.example.com", "username": "rep@nokey.example", "password": "secret"},
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "mailbox_encryption_key_missing"
    assert "MAILBOX_ENCRYPTION_KEY" in response.json()["error"]["message"]
    assert client.get("/api/v1/mailboxes").json() == []  # nothing stored


# --- sync ---------------------------------------------------------------------------------------


def test_first_then_incremental_sync_matches_contacts_proposes_strangers_and_ignores_colleagues(env: Env) -> None:
    account = make_account(env)
    alice = add_contact(env, account, "alice@customer.example")
    mailbox = account.connect(port=env.dovecot.port)
    html = (
        "<html><head><style>p {color: red}</style><script>alert(1)</script></head>"
        "<body><p>Hi Rep,</p><p>We&nbsp;would like <b>50 seats</b>.</p><div>Alice</div></body></html>"
    )
    env.dovecot.append(
        account.address,
        "INBOX",
        mail(
            sender="Alice Doe <alice@customer.example>",
            to=account.address,
            subject="Seats",
            html=html,
            attachment=("quote.pdf", b"%PDF-1.4 " + b"x" * 2000, "application/pdf"),
        ),
    )
    env.dovecot.append(
        account.address,
        "INBOX",
        mail(sender="Bob Stranger <bob@prospect.example>", to=account.address, subject="Intro", body="Hi, I am Bob"),
    )
    env.dovecot.append(
        account.address,
        "INBOX",
        mail(sender=f"boss@{account.domain}", to=account.address, subject="Lunch?", body="internal"),
    )
    env.dovecot.append(
        account.address,
        "INBOX",
        mail(
            sender="Shop <deals@shop.example>",
            to=account.address,
            subject="50% off",
            headers={"List-Unsubscribe": "<https://shop.example/unsubscribe>"},
        ),
    )

    response = account.client.post(f"/api/v1/mailboxes/{mailbox['id']}/sync")
    assert response.status_code == 200, response.text
    report = response.json()["report"]
    assert report["status"] == "ok"
    (inbox,) = [f for f in report["folders"] if f["folder"] == "INBOX"]
    # The colleague's note and the newsletter are not the CRM's business: neither stored nor proposed.
    assert (inbox["fetched"], inbox["created"], inbox["ignored"]) == (4, 2, 2)
    assert [f["folder"] for f in report["folders"]] == ["INBOX", "Sent"]  # "\\Sent" found by its special use
    assert report["proposed_contacts"] == ["bob@prospect.example"]

    rows = activities(env, account)
    assert len(rows) == 2
    seats = next(a for a in rows if a.subject == "Seats")
    assert seats.type == "email" and seats.direction == "inbound" and seats.contact_id == alice
    assert seats.owner_id == account.user_id
    assert seats.body is not None and "50 seats" in seats.body and "We would like" in seats.body
    assert "<" not in seats.body and "alert" not in seats.body and "color" not in seats.body
    assert seats.custom_properties["email_attachment_count"] == 1
    (attachment,) = json.loads(seats.custom_properties["email_attachments"])
    assert attachment["name"] == "quote.pdf" and attachment["type"] == "application/pdf"
    assert attachment["size"] == 2009
    assert "%PDF" not in (seats.body or "")  # listed, not stored
    # Written through the CRM service: its change event drives embeddings and conversation analysis.
    assert [e.operation for e in env.events_for(seats.id)] == ["created"]

    intro = next(a for a in rows if a.subject == "Intro")
    assert intro.contact_id is None
    with env.db.organization_scope(account.organization_id) as session:
        assert session.scalar(select(Contact).where(Contact.email == "bob@prospect.example")) is None
        (proposal,) = session.scalars(select(PendingAction).where(PendingAction.agent == "mailbox"))
        assert (proposal.action, proposal.status, proposal.operation) == ("create_contact", "pending", "create")
        assert proposal.changes["email"]["after"] == "bob@prospect.example"
        assert proposal.changes["first_name"]["after"] == "Bob"

    # Incremental: only what arrived since, and the stranger is not proposed twice.
    env.dovecot.append(
        account.address,
        "INBOX",
        mail(sender="bob@prospect.example", to=account.address, subject="Following up", body="Any news?"),
    )
    report = account.client.post(f"/api/v1/mailboxes/{mailbox['id']}/sync").json()["report"]
    (inbox,) = [f for f in report["folders"] if f["folder"] == "INBOX"]
    assert (inbox["fetched"], inbox["created"], inbox["reset"]) == (1, 1, False)
    assert report["proposed_contacts"] == []
    report = account.client.post(f"/api/v1/mailboxes/{mailbox['id']}/sync").json()["report"]
    assert sum(f["fetched"] for f in report["folders"]) == 0
    assert len(activities(env, account)) == 3
    shown = account.client.get(f"/api/v1/mailboxes/{mailbox['id']}").json()
    assert shown["status"] == "ok" and shown["last_synced_at"] and shown["messages_synced"] == 3

    # A person approves Bob as a contact: the next sync puts his earlier e-mails on his timeline.
    from okyaku.agents.approvals import ApprovalService

    applied = ApprovalService(env.runtime).approve(account.organization_id, proposal.id, reviewer_id=account.user_id)
    bob = uuid.UUID(str(applied.result["entity_id"])) if applied.result else None
    assert applied.status == "approved" and bob is not None
    report = account.client.post(f"/api/v1/mailboxes/{mailbox['id']}/sync").json()["report"]
    assert report["linked"] == 2
    from_bob = [a for a in activities(env, account) if a.custom_properties.get("email_from") == "bob@prospect.example"]
    assert {a.contact_id for a in from_bob} == {bob} and len(from_bob) == 2
    assert all("updated" in [e.operation for e in env.events_for(a.id)] for a in from_bob)


def test_a_uidvalidity_change_reads_the_folder_again_without_duplicates(env: Env) -> None:
    account = make_account(env)
    add_contact(env, account, "carol@customer.example", "Carol")
    mailbox = account.connect(port=env.dovecot.port, folders=["INBOX"])
    for n in range(3):
        env.dovecot.append(
            account.address, "INBOX", mail(sender="carol@customer.example", to=account.address, subject=f"Note {n}")
        )
    first = env.service.sync(account.organization_id, uuid.UUID(mailbox["id"]))
    assert first.folders[0].created == 3

    old = env.dovecot.uidvalidity(account.address, "INBOX")
    env.dovecot.set_uidvalidity(account.address, "INBOX", old + 1000)
    env.dovecot.append(
        account.address, "INBOX", mail(sender="carol@customer.example", to=account.address, subject="Note new")
    )
    again = env.service.sync(account.organization_id, uuid.UUID(mailbox["id"]))
    (folder,) = again.folders
    assert folder.reset and folder.uidvalidity == old + 1000
    assert (folder.fetched, folder.known, folder.created) == (4, 3, 1)
    assert sorted(a.subject or "" for a in activities(env, account)) == ["Note 0", "Note 1", "Note 2", "Note new"]
    assert env.service.sync(account.organization_id, uuid.UUID(mailbox["id"])).folders[0].fetched == 0


def test_the_same_message_twice_is_one_activity(env: Env) -> None:
    account = make_account(env)
    add_contact(env, account, "dan@customer.example", "Dan")
    colleague = f"colleague@{account.domain}"
    env.dovecot.add_user(colleague, "colleague-pw")
    with env.db.organization_scope(account.organization_id) as session:
        session.add(User(email=colleague, name="Colleague"))
    mine = account.connect(port=env.dovecot.port, folders=["INBOX", "Archive/2019"])
    # The colleague's own mailbox, connected with the colleague's key, in the same organization.
    from okyaku.tenancy import Principal

    with env.db.organization_scope(account.organization_id) as session:
        colleague_id = session.scalar(select(User.id).where(User.email == colleague))
    assert colleague_id is not None
    principal = Principal(organization_id=account.organization_id, user_id=colleague_id, api_key_id=uuid.uuid4())
    from okyaku.mailboxes.schemas import MailboxCreate

    theirs = env.service.create(
        principal,
        MailboxCreate.model_validate(
            {
                "imap_host": "127.0.0.1",
                "imap_port": env.dovecot.port,
                "tls_mode": "none",
                "username": colleague,
                "password": "colleague-pw",
                "folders": ["INBOX"],
            }
        ),
    )
    raw = mail(
        sender="dan@customer.example",
        to=f"{account.address}, {colleague}",
        subject="To you both",
        message_id="<both-1@customer.example>",
    )
    env.dovecot.append(account.address, "INBOX", raw)
    env.dovecot.append(account.address, "INBOX", raw)  # delivered twice into one folder
    env.dovecot.append(colleague, "INBOX", raw)  # and to a colleague who syncs too

    report = env.handler(schedule_event(), None)
    assert report["failed"] == [] and report["mailboxes"] >= 2
    rows = [a for a in activities(env, account) if a.message_id == "<both-1@customer.example>"]
    assert len(rows) == 1
    with env.db.organization_scope(account.organization_id) as session:
        synced = {m.id: m.messages_synced for m in session.scalars(select(Mailbox))}
    assert synced[uuid.UUID(mine["id"])] + synced[theirs.id] == 1
    # A folder the server does not have is said on the mailbox, which still syncs the others.
    shown = account.client.get(f"/api/v1/mailboxes/{mine['id']}").json()
    assert shown["status"] == "ok" and shown["last_error"] == "not on the server: Archive/2019"


def test_a_reply_is_threaded_to_our_sent_message_and_the_copy_in_sent_is_the_same_activity(env: Env) -> None:
    account = make_account(env)
    erin = add_contact(env, account, "erin@customer.example", "Erin")
    with env.runtime.transaction(account.organization_id) as session:
        pipeline = ENTITIES["pipeline"].service.create(
            session, PipelineCreate.model_validate({"name": "Sales", "stages": STAGES})
        )
        pipeline_id = pipeline.id
    with env.runtime.transaction(account.organization_id) as session:
        deal = ENTITIES["deal"].service.create(
            session,
            DealCreate.model_validate(
                {"name": "Erin's seats", "pipeline_id": str(pipeline_id), "contact_id": str(erin)}
            ),
        )
        deal_id = deal.id
        # What the outbox does when it sends: an outbound e-mail activity carrying its Message-ID.
        sent = ENTITIES["activity"].service.create(
            session,
            SyncedEmail(
                type="email",
                subject="Proposal",
                body="Here is our proposal",
                direction="outbound",
                contact_id=erin,
                deal_id=deal_id,
                message_id="<proposal-1@okyaku.acme.example>",
            ),
            actor=account.user_id,
        )
        sent_id = sent.id
    mailbox = account.connect(port=env.dovecot.port)
    # The copy the mail server kept in Sent, and Erin's reply, and a reply from her colleague who
    # only carries the thread in References.
    env.dovecot.append(
        account.address,
        "Sent",
        mail(
            sender=account.address,
            to="erin@customer.example",
            subject="Proposal",
            body="Here is our proposal",
            message_id="<proposal-1@okyaku.acme.example>",
        ),
    )
    env.dovecot.append(
        account.address,
        "INBOX",
        mail(
            sender="erin@customer.example",
            to=account.address,
            subject="Re: Proposal",
            body="Looks good",
            message_id="<reply-1@customer.example>",
            in_reply_to="<proposal-1@okyaku.acme.example>",
            references="<proposal-1@okyaku.acme.example>",
        ),
    )
    env.dovecot.append(
        account.address,
        "INBOX",
        mail(
            sender="Frank Other <frank@customer.example>",
            to=account.address,
            subject="Re: Re: Proposal",
            body="Adding myself",
            references="<proposal-1@okyaku.acme.example> <reply-1@customer.example>",
        ),
    )
    env.dovecot.append(
        account.address,
        "Sent",
        mail(sender=account.address, to="erin@customer.example", subject="Thanks", body="Thank you, Erin"),
    )

    report = env.handler(sqs_event(sync_job(account, mailbox["id"])), None)
    assert report == {"batchItemFailures": []}
    rows = {a.subject: a for a in activities(env, account)}
    assert set(rows) == {"Proposal", "Re: Proposal", "Re: Re: Proposal", "Thanks"}
    assert rows["Proposal"].id == sent_id  # the copy in Sent is the activity the outbox wrote
    reply = rows["Re: Proposal"]
    assert (reply.direction, reply.contact_id, reply.deal_id) == ("inbound", erin, deal_id)
    assert reply.custom_properties["email_reply_to_activity_id"] == str(sent_id)
    assert reply.custom_properties["email_thread_id"] == "<proposal-1@okyaku.acme.example>"
    other = rows["Re: Re: Proposal"]
    # Nearest first: the reply it answers, whose contact and deal it inherits.
    assert other.custom_properties["email_reply_to_activity_id"] == str(reply.id)
    assert (other.contact_id, other.deal_id) == (erin, deal_id)
    thanks = rows["Thanks"]
    assert (thanks.direction, thanks.contact_id) == ("outbound", erin)
    with env.db.organization_scope(account.organization_id) as session:
        proposed = [p.changes["email"]["after"] for p in session.scalars(select(PendingAction))]
    assert proposed == ["frank@customer.example"]


def test_bad_credentials_show_on_the_mailbox_and_notify_its_owner_without_failing_another(
    env: Env, moto_endpoint: str
) -> None:
    good = make_account(env)
    add_contact(env, good, "gina@customer.example", "Gina")
    good_box = good.connect(port=env.dovecot.port, folders=["INBOX"])
    env.dovecot.append(good.address, "INBOX", mail(sender="gina@customer.example", to=good.address, subject="Hi"))
    bad = make_account(env)
    bad_box = bad.connect(port=env.dovecot.port, password="not-the-password", folders=["INBOX"])

    # One SQS batch with both mailboxes' jobs: the broken one is recorded, not retried.
    event = sqs_event(sync_job(bad, bad_box["id"]), sync_job(good, good_box["id"]))
    assert env.handler(event, None) == {"batchItemFailures": []}
    shown = bad.client.get(f"/api/v1/mailboxes/{bad_box['id']}").json()
    assert shown["status"] == "error" and "refused the username or password" in shown["last_error"]
    assert "app password" in shown["last_error"] and shown["last_error_at"] and shown["last_synced_at"] is None
    assert good.client.get(f"/api/v1/mailboxes/{good_box['id']}").json()["status"] == "ok"
    assert [a.subject for a in activities(env, good)] == ["Hi"]

    # The schedule runs every mailbox again: the owner is told once, not on every run.
    report = env.handler(schedule_event(), None)
    assert report["failed"] == []
    with env.db.organization_scope(bad.organization_id) as session:
        notes = list(session.scalars(select(Notification).where(Notification.kind == "mailbox")))
    assert len(notes) == 1 and notes[0].user_id == bad.user_id and notes[0].email_status == "pending"
    assert bad.address in notes[0].title
    # E-mailed by the notifications delivery (SES through moto here), as a mailbox notice.
    delivered = deliver_notifications(env, bad, moto_endpoint)
    assert (delivered.sent, delivered.failed) == (1, 0)
    (message,) = sent_to(bad.address)
    assert "stopped syncing" in message.subject and "Your mailbox needs your attention" in message.body

    # A server that is not there is another error, on that mailbox alone.
    gone = bad.client.patch(
        f"/api/v1/mailboxes/{bad_box['id']}", json={"imap_port": _closed_port(), "password": bad.password}
    ).json()
    assert gone["status"] == "pending" and gone["last_error"] is None
    result = bad.client.post(f"/api/v1/mailboxes/{bad_box['id']}/sync").json()["report"]
    assert result["status"] == "error" and result["error_kind"] == "unreachable"
    with env.db.organization_scope(bad.organization_id) as session:
        assert session.scalar(select(Notification.id).where(Notification.kind == "mailbox").offset(1)) is not None


def test_the_schedule_fans_out_one_job_per_mailbox_onto_the_queue(
    pg: LocalDatabase, db: Database, publisher: RecordingPublisher, dovecot: Dovecot, sqs: Any
) -> None:
    queue_url = sqs.create_queue(QueueName=f"mailbox-sync-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    settings = Settings(
        database_url=pg.app_url,
        mailbox_encryption_key=KEY,
        mailbox_sync_queue_url=queue_url,
        aws_endpoint_url=sqs.meta.endpoint_url,
    )
    runtime = Runtime(settings, db=db, publisher=publisher)
    service = MailboxService(runtime)
    env = Env(
        runtime,
        service,
        publisher,
        function_handler(name="mailboxes", on_schedule=make_schedule_handler(service)),
        dovecot,
        db,
    )
    account = make_account(env)
    box = account.connect(port=dovecot.port)
    report = env.handler(schedule_event(), None)
    assert report["not_queued"] == [] and report["queued"] == report["mailboxes"] >= 1
    bodies: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(m["Body"]) for m in batch]
    assert {"job": "mailbox_sync", "organization_id": str(account.organization_id), "mailbox_id": box["id"]} in bodies
    # "Sync now" with a queue: 202, queued, nothing synced here.
    response = account.client.post(f"/api/v1/mailboxes/{box['id']}/sync")
    assert response.status_code == 202 and response.json() == {"queued": True, "report": None}


def _closed_port() -> int:
    from tests.support.dovecot import free_port

    return free_port()


def test_a_changed_encryption_key_shows_on_the_mailbox_instead_of_failing(env: Env, pg: LocalDatabase) -> None:
    account = make_account(env)
    box = account.connect(port=env.dovecot.port, folders=["INBOX"])
    other_key = Settings(database_url=pg.app_url, mailbox_encryption_key=Fernet.generate_key().decode())
    rotated = MailboxService(Runtime(other_key, db=env.db, publisher=env.publisher))
    report = rotated.sync(account.organization_id, uuid.UUID(box["id"]))
    assert (report.status, report.error_kind) == ("error", "mailbox_password_unreadable")
    shown = account.client.get(f"/api/v1/mailboxes/{box['id']}").json()
    assert shown["status"] == "error" and "enter it again" in shown["last_error"]


def test_two_syncs_of_one_mailbox_at_once_store_each_message_once(env: Env) -> None:
    """The schedule and "sync now" racing: each message once (the Message-ID's unique index
    decides), and the folder's cursor ends at the last UID, never behind it."""
    from concurrent.futures import ThreadPoolExecutor

    from okyaku.mailboxes.models import MailboxFolder

    account = make_account(env)
    add_contact(env, account, "hana@customer.example", "Hana")
    box = uuid.UUID(account.connect(port=env.dovecot.port, folders=["INBOX"])["id"])
    client = env.dovecot.connect(account.address)
    for n in range(60):
        client.append("INBOX", None, None, mail(sender="hana@customer.example", to=account.address, subject=f"N{n}"))
    client.logout()
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: env.service.sync(account.organization_id, box), range(2)))
    assert all(r.status == "ok" for r in reports)
    assert sum(r.folders[0].created for r in reports) == 60
    assert sorted(a.subject or "" for a in activities(env, account)) == sorted(f"N{n}" for n in range(60))
    with env.db.organization_scope(account.organization_id) as session:
        cursor = session.get(MailboxFolder, (box, "INBOX"))
        assert cursor is not None and cursor.last_uid == 60


def deliver_notifications(env: Env, account: Account, moto_endpoint: str) -> Any:
    import boto3

    from okyaku.anomalies.service import AnomalyService

    sender = f"alerts-{uuid.uuid4().hex[:6]}@okyaku.example"
    boto3.client("ses", endpoint_url=moto_endpoint, region_name="us-east-1").verify_email_identity(EmailAddress=sender)
    settings = env.runtime.settings.model_copy(
        update={"notifications_email_from": sender, "aws_endpoint_url": moto_endpoint}
    )
    return AnomalyService(Runtime(settings, db=env.db)).deliver(account.organization_id)


def sent_to(address: str) -> list[Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    return [m for m in backend.sent_messages if address in m.destinations.get("ToAddresses", [])]
