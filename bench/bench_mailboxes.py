"""Mailbox sync throughput against a real Dovecot (tests/support/dovecot.py) and the embedded
Postgres in ``.okyaku/bench-pg``: N messages (a third from known contacts, a third from strangers,
a third replies to earlier ones, some with attachments) put in the INBOX with IMAP APPEND, then
synced in one run; then a run with nothing new, and a run after a UIDVALIDITY change (every
message seen again, none stored twice).

``python -m bench mailboxes`` (``BENCH_MAILBOX_MESSAGES`` changes the count, default 500).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

from cryptography.fernet import Fernet

from bench._database import bench_organization
from okyaku.clock import utc_now
from okyaku.config import Settings
from okyaku.crm.entities import ENTITIES
from okyaku.crm.schemas import ContactCreate
from okyaku.mailboxes.schemas import MailboxCreate
from okyaku.mailboxes.service import MailboxService
from okyaku.runtime import Runtime
from okyaku.tenancy import Principal
from tests.support.dovecot import running_dovecot


def message(i: int, rep: str) -> bytes:
    kind = i % 3
    mail = EmailMessage()
    mail["From"] = f"contact{i % 50}@customer.example" if kind == 0 else f"stranger{i}@prospect.example"
    mail["To"] = rep
    mail["Subject"] = f"Message {i}"
    mail["Date"] = format_datetime(utc_now())
    mail["Message-ID"] = f"<m{i}@bench.example>"
    if kind == 2 and i >= 3:
        mail["In-Reply-To"] = f"<m{i - 3}@bench.example>"
        mail["References"] = f"<m{i - 3}@bench.example>"
    mail.set_content(f"Hello, this is message {i}. " * 20)
    if i % 10 == 0:
        mail.add_attachment(b"x" * 20_000, maintype="application", subtype="pdf", filename=f"quote-{i}.pdf")
    return mail.as_bytes()


def main() -> None:
    count = int(os.environ.get("BENCH_MAILBOX_MESSAGES", "500"))
    rep = "rep@bench-acme.example"
    with (
        bench_organization("Mailbox bench", rep) as bench,
        running_dovecot(Path(tempfile.mkdtemp(prefix="okyaku-bench-dovecot-"))) as dovecot,
    ):
        settings = Settings(
            database_url=bench.local.app_url,
            mailbox_encryption_key=Fernet.generate_key().decode(),
            mailbox_sync_max_messages=count,
        )
        runtime = Runtime(settings, db=bench.db, publisher=None)
        organization_id = bench.org.organization_id
        with runtime.transaction(organization_id) as session:
            for n in range(50):
                ENTITIES["contact"].service.create(
                    session, ContactCreate(first_name=f"Contact {n}", email=f"contact{n}@customer.example")
                )
        dovecot.add_user(rep, "bench-pw")
        client = dovecot.connect(rep)
        started = time.perf_counter()
        for i in range(count):
            client.append("INBOX", None, None, message(i, rep))
        client.logout()
        append_s = time.perf_counter() - started
        service = MailboxService(runtime)
        principal = Principal(organization_id, bench.org.user_id, uuid.uuid4())
        mailbox = service.create(
            principal,
            MailboxCreate.model_validate(
                {
                    "imap_host": "127.0.0.1",
                    "imap_port": dovecot.port,
                    "tls_mode": "none",
                    "username": rep,
                    "password": "bench-pw",
                    "folders": ["INBOX"],
                }
            ),
        )
        proposing: list[float] = []
        propose = service._propose_contacts

        def timed_propose(*args: object) -> list[str]:
            started = time.perf_counter()
            try:
                return propose(*args)  # type: ignore[arg-type]
            finally:
                proposing.append(time.perf_counter() - started)

        service._propose_contacts = timed_propose  # type: ignore[method-assign]
        rows = []
        first = service.sync(organization_id, mailbox.id)
        rows.append(("first sync", first.folders[0].fetched, first.folders[0].created, first.seconds))
        again = service.sync(organization_id, mailbox.id)
        rows.append(("nothing new", again.folders[0].fetched, again.folders[0].created, again.seconds))
        old = dovecot.uidvalidity(rep, "INBOX")
        dovecot.set_uidvalidity(rep, "INBOX", old + 1)
        reset = service.sync(organization_id, mailbox.id)
        rows.append(("after UIDVALIDITY change", reset.folders[0].fetched, reset.folders[0].created, reset.seconds))
        print(
            f"{count} messages appended over IMAP in {append_s:.2f} s; "
            f"{len(first.proposed_contacts)} strangers proposed in {proposing[0]:.2f} s of the first sync"
        )
        print(f"{'run':<28}{'fetched':>9}{'created':>9}{'seconds':>9}{'messages/s':>12}")
        for name, fetched, created, seconds in rows:
            rate = f"{fetched / seconds:.0f}" if fetched and seconds else "-"
            print(f"{name:<28}{fetched:>9}{created:>9}{seconds:>9.2f}{rate:>12}")
