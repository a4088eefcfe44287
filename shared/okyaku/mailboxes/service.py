"""Mailbox connections and their sync.

A connection belongs to one user (the owner of the activities it creates); only that user sees,
changes or syncs it. ``sync`` never raises for the mailbox's own problems (refused password,
server down, key missing): it records them on the mailbox (``status``, ``last_error``), notifies
the owner once per new error, and returns — so one broken mailbox never fails another's job.
What it raises (the database down) is worth a retry.

Each message is stored in its own transaction together with its folder's cursor (UIDVALIDITY,
last UID), so a crash mid-run loses nothing and stores nothing twice: the next run starts after
the last message stored, and the Message-ID deduplicates anything seen again (after a UIDVALIDITY
change the folder is read again from the start).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from sqlalchemy import case, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from okyaku.clock import utc_now
from okyaku.errors import Forbidden, NotFound, OkyakuError
from okyaku.fanout import fan_out
from okyaku.mailboxes.models import Mailbox, MailboxFolder
from okyaku.mailboxes.schemas import FolderReport, MailboxCreate, MailboxUpdate, SyncReport
from okyaku.mailboxes.secrets import decrypt_password, encrypt_password
from okyaku.runtime import Runtime
from okyaku.tenancy import Principal, list_organization_ids

if TYPE_CHECKING:  # the sync's modules load with the first sync, not with the HTTP routes
    from okyaku.mailboxes.imap import ImapAccount, ImapConnection
    from okyaku.mailboxes.messages import ParsedMessage
    from okyaku.mailboxes.store import Directory, Origin, UnknownSender

logger = logging.getLogger(__name__)

MAILBOX_AGENT = "mailbox"  # the approval queue's "agent" of the contacts a mailbox proposes
STORE_BATCH = 25  # messages stored per transaction, with their folder's cursor


class MailboxSyncJob(BaseModel):
    """The body of a message on the mailbox sync queue: one mailbox."""

    job: str = "mailbox_sync"
    organization_id: uuid.UUID
    mailbox_id: uuid.UUID


Connect = Callable[["ImapAccount"], "ImapConnection"]


class MailboxService:
    def __init__(
        self, runtime: Runtime, *, clock: Callable[[], datetime] = utc_now, connect: Connect | None = None
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self._connect = connect

    def connect(self, account: ImapAccount) -> ImapConnection:
        if self._connect is not None:
            return self._connect(account)
        from okyaku.mailboxes.imap import open_imap

        return open_imap(account)

    @property
    def settings(self) -> Any:
        return self.runtime.settings

    # --- connections ---------------------------------------------------------------------------

    def create(self, principal: Principal, data: MailboxCreate) -> Mailbox:
        owner = _owner(principal)
        token = encrypt_password(self.settings, data.password.get_secret_value())  # 503 without a key
        with self.runtime.db.organization_scope(principal.organization_id) as session:
            duplicate = session.scalar(
                select(Mailbox.id).where(
                    Mailbox.user_id == owner,
                    func.lower(Mailbox.imap_host) == data.imap_host.lower(),
                    Mailbox.username == data.username,
                )
            )
            if duplicate is not None:
                from okyaku.errors import Conflict

                raise Conflict(
                    f"you already connected {data.username} on {data.imap_host}",
                    code="mailbox_exists",
                    details={"id": str(duplicate)},
                )
            mailbox = Mailbox(
                user_id=owner,
                imap_host=data.imap_host,
                imap_port=data.imap_port,
                tls_mode=data.tls_mode,
                username=data.username,
                password_encrypted=token,
                folders=list(data.folders),
                status="pending",
            )
            session.add(mailbox)
            session.flush()
            session.refresh(mailbox)
            session.expunge(mailbox)
            return mailbox

    def list_own(self, principal: Principal) -> list[Mailbox]:
        owner = _owner(principal)
        with self.runtime.db.organization_scope(principal.organization_id) as session:
            rows = list(session.scalars(select(Mailbox).where(Mailbox.user_id == owner).order_by(Mailbox.created_at)))
            session.expunge_all()
            return rows

    def get(self, principal: Principal, mailbox_id: uuid.UUID) -> Mailbox:
        with self.runtime.db.organization_scope(principal.organization_id) as session:
            mailbox = self._own(session, principal, mailbox_id)
            session.expunge(mailbox)
            return mailbox

    def update(self, principal: Principal, mailbox_id: uuid.UUID, patch: MailboxUpdate) -> Mailbox:
        changes = patch.model_dump(exclude_unset=True)
        password = changes.pop("password", None)
        token = encrypt_password(self.settings, password.get_secret_value()) if password is not None else None
        with self.runtime.db.organization_scope(principal.organization_id) as session:
            mailbox = self._own(session, principal, mailbox_id)
            for name, value in changes.items():
                if value is not None:
                    setattr(mailbox, name, value)
            if mailbox.tls_mode == "none":
                from okyaku.mailboxes.schemas import is_loopback

                if not is_loopback(mailbox.imap_host):
                    from okyaku.errors import ValidationFailed, field_error

                    raise ValidationFailed(
                        "the mailbox is not valid",
                        details=[field_error("tls_mode", "none is only allowed to a loopback server")],
                    )
            if token is not None:
                mailbox.password_encrypted = token
            if changes or token is not None:
                # New settings: the next sync says whether they work.
                mailbox.status, mailbox.last_error = "pending", None
                mailbox.updated_at = self.clock()
            session.flush()
            session.refresh(mailbox)
            session.expunge(mailbox)
            return mailbox

    def delete(self, principal: Principal, mailbox_id: uuid.UUID) -> None:
        """The connection and its cursors go; the activities it created stay in the CRM."""
        with self.runtime.db.organization_scope(principal.organization_id) as session:
            session.delete(self._own(session, principal, mailbox_id))

    def _own(self, session: Session, principal: Principal, mailbox_id: uuid.UUID) -> Mailbox:
        mailbox = session.get(Mailbox, mailbox_id)
        if mailbox is None or mailbox.user_id != principal.user_id:
            raise NotFound(f"mailbox {mailbox_id} not found", details={"id": str(mailbox_id)})
        return mailbox

    # --- sync ------------------------------------------------------------------------------------

    def sync_now(self, principal: Principal, mailbox_id: uuid.UUID) -> tuple[bool, SyncReport | None]:
        """Queue the mailbox's sync (with a queue), else run it now; (queued, report)."""
        self.get(principal, mailbox_id)  # 404 unless it is the caller's
        job = MailboxSyncJob(organization_id=principal.organization_id, mailbox_id=mailbox_id)
        queue_url = self.settings.mailbox_sync_queue_url
        if queue_url:
            from okyaku.errors import DependencyUnavailable
            from okyaku.fanout import enqueue

            result = enqueue(self.settings, queue_url, {f"mailbox:{mailbox_id}": job.model_dump_json()})
            if result["not_queued"]:
                raise DependencyUnavailable("the sync could not be queued; try again", code="queue_unavailable")
            return True, None
        return False, self.sync(principal.organization_id, mailbox_id)

    def sync(self, organization_id: uuid.UUID, mailbox_id: uuid.UUID) -> SyncReport:
        from okyaku.mailboxes.imap import ImapAccount, ImapFailure
        from okyaku.mailboxes.store import link_to_new_contacts, load_directory

        started = time.monotonic()
        with self.runtime.db.organization_scope(organization_id) as session:
            mailbox = session.get(Mailbox, mailbox_id)
            if mailbox is None:  # deleted since the job was queued
                return SyncReport(mailbox_id=mailbox_id, status="skipped", error="the mailbox no longer exists")
            session.expunge(mailbox)
            cursors = {
                c.folder: (c.uidvalidity, c.last_uid)
                for c in session.scalars(select(MailboxFolder).where(MailboxFolder.mailbox_id == mailbox_id))
            }
            directory = load_directory(session, [mailbox.username])
        report = SyncReport(mailbox_id=mailbox_id, status="ok")
        proposed: dict[str, UnknownSender] = {}
        try:
            password = decrypt_password(self.settings, mailbox.password_encrypted)
            account = ImapAccount(
                host=mailbox.imap_host,
                port=mailbox.imap_port,
                tls_mode=mailbox.tls_mode,  # type: ignore[arg-type]
                username=mailbox.username,
                password=password,
                timeout_s=self.settings.mailbox_imap_timeout_s,
            )
            since = (mailbox.created_at - timedelta(days=self.settings.mailbox_initial_days)).date()
            with self.runtime.transaction(organization_id) as session:
                report.linked = link_to_new_contacts(session, mailbox.user_id)
            with self.connect(account) as imap:
                folders, report.missing_folders = imap.resolve_folders(list(mailbox.folders))
                for folder in folders:
                    report.folders.append(
                        self._sync_folder(imap, mailbox, folder, cursors.get(folder), since, directory, proposed)
                    )
        except (ImapFailure, OkyakuError) as error:
            report.status = "error"
            report.error = error.message if isinstance(error, OkyakuError) else str(error)
            report.error_kind = error.code if isinstance(error, OkyakuError) else error.kind
            logger.warning("mailbox %s sync failed: %s", mailbox_id, report.error_kind)
        # The senders of what was stored before any failure too: those messages will not come again.
        report.proposed_contacts = self._propose_contacts(organization_id, mailbox, proposed)
        report.seconds = round(time.monotonic() - started, 3)
        self._record_outcome(organization_id, mailbox, report)
        return report

    def _sync_folder(
        self,
        imap: ImapConnection,
        mailbox: Mailbox,
        folder: str,
        cursor: tuple[int, int] | None,
        since: Any,
        directory: Directory,
        proposed: dict[str, UnknownSender],
    ) -> FolderReport:
        uidvalidity = imap.select(folder)
        reset = cursor is not None and cursor[0] != uidvalidity
        after = cursor[1] if cursor is not None and not reset else 0
        uids = imap.new_uids(after, since)
        limit = self.settings.mailbox_sync_max_messages
        report = FolderReport(
            folder=folder,
            uidvalidity=uidvalidity,
            reset=reset,
            fetched=0,
            created=0,
            known=0,
            ignored=0,
            last_uid=after,
            more=len(uids) > limit,
        )
        if reset or cursor is None:
            # Record the (new) UIDVALIDITY even when there is nothing to fetch.
            with self.runtime.transaction(mailbox.organization_id) as session:
                _save_cursor(session, mailbox, folder, uidvalidity, after)
        from okyaku.mailboxes.messages import parse_message
        from okyaku.mailboxes.store import Origin

        origin = Origin(owner_id=mailbox.user_id, mailbox_id=mailbox.id, folder=folder)
        batch: list[tuple[int, ParsedMessage]] = []
        for fetched in imap.fetch(uids[:limit], self.settings.mailbox_message_max_bytes):
            parsed = parse_message(
                fetched.raw, max_body_chars=self.settings.mailbox_body_max_chars, headers_only=fetched.headers_only
            )
            batch.append((fetched.uid, parsed))
            if len(batch) >= STORE_BATCH:
                self._store_batch(mailbox, folder, uidvalidity, origin, directory, batch, report, proposed)
                batch = []
        if batch:
            self._store_batch(mailbox, folder, uidvalidity, origin, directory, batch, report, proposed)
        return report

    def _store_batch(
        self,
        mailbox: Mailbox,
        folder: str,
        uidvalidity: int,
        origin: Origin,
        directory: Directory,
        batch: list[tuple[int, ParsedMessage]],
        report: FolderReport,
        proposed: dict[str, UnknownSender],
    ) -> None:
        """Messages and the folder's cursor in one transaction: committed together or not at all
        (a commit per message cost more than the rest of its storing)."""
        from okyaku.mailboxes.store import store_message

        results = []
        with self.runtime.transaction(mailbox.organization_id) as session:
            for _uid, parsed in batch:
                results.append(store_message(session, parsed, origin=origin, directory=directory, now=self.clock()))
            _save_cursor(session, mailbox, folder, uidvalidity, batch[-1][0])
        report.fetched += len(batch)
        report.last_uid = batch[-1][0]
        for result in results:
            if result.outcome == "created":
                report.created += 1
            elif result.outcome == "known":
                report.known += 1
            else:
                report.ignored += 1
            for sender in result.unknown_senders:
                proposed.setdefault(sender.address, sender)

    def _propose_contacts(
        self, organization_id: uuid.UUID, mailbox: Mailbox, senders: dict[str, UnknownSender]
    ) -> list[str]:
        """Each unknown outside sender once, as a create_contact proposal (not a contact): a
        person decides whether a sender is someone the CRM should know."""
        if not senders:
            return []
        from okyaku.agents.approvals import ApprovalService  # loaded by the runs that propose
        from okyaku.agents.tooling import Proposal

        with self.runtime.db.organization_scope(organization_id) as session:
            already = set(
                session.scalars(
                    text(
                        "SELECT lower(changes->'email'->>'after') FROM pending_actions WHERE action = 'create_contact' "
                        "AND status = 'pending' AND lower(changes->'email'->>'after') = ANY(:addresses)"
                    ),
                    {"addresses": list(senders)},
                )
            )
            known = set(
                session.scalars(select(func.lower(Mailbox.username)).where(Mailbox.username.in_(list(senders))))
            )
        approvals = ApprovalService(self.runtime, clock=self.clock)
        proposed: list[str] = []
        for address, sender in senders.items():
            if address in already or address in known:
                continue
            first, last = _split_name(sender.name)
            changes: dict[str, dict[str, Any]] = {"email": {"before": None, "after": address}}
            if first:
                changes["first_name"] = {"before": None, "after": first}
            if last:
                changes["last_name"] = {"before": None, "after": last}
            changes["source"] = {"before": None, "after": "email"}
            changes["owner_id"] = {"before": None, "after": str(mailbox.user_id)}
            approvals.propose(
                organization_id,
                execution_id=None,
                agent=MAILBOX_AGENT,
                action="create_contact",
                proposal=Proposal(
                    operation="create",
                    entity_type="contact",
                    entity_id=None,
                    changes=changes,
                    reasoning=f"{sender.name or address} <{address}> wrote to {mailbox.username} and is not a "
                    "contact yet.",
                ),
                low_risk=False,
                context={"source": "mailbox", "mailbox_id": str(mailbox.id)},
                auto_apply=False,  # who becomes a contact is a person's decision
                requested_by=None,
            )
            proposed.append(address)
        return proposed

    def _record_outcome(self, organization_id: uuid.UUID, mailbox: Mailbox, report: SyncReport) -> None:
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            row = session.get(Mailbox, mailbox.id, with_for_update=True)
            if row is None:
                return
            if report.status == "ok":
                # A folder the server does not have is worth saying, not worth failing the others.
                missing = f"not on the server: {', '.join(report.missing_folders)}" if report.missing_folders else None
                row.status, row.last_error, row.last_synced_at = "ok", missing, now
                row.messages_synced += report.created
            else:
                # Tell the owner once per new problem, not on every scheduled run.
                if row.status != "error" or row.last_error != report.error:
                    _notify_owner(session, row, report.error or "the sync failed")
                row.status, row.last_error, row.last_error_at = "error", report.error, now
                row.messages_synced += report.created
            row.updated_at = now

    # --- the schedule --------------------------------------------------------------------------

    def fan_out(self) -> dict[str, Any]:
        """One sync job per mailbox of every organization: onto MAILBOX_SYNC_QUEUE_URL, or run
        here one after another (a failing one reported, the others still run)."""
        jobs: list[MailboxSyncJob] = []
        for organization_id in list_organization_ids(self.runtime.db):
            with self.runtime.db.organization_scope(organization_id) as session:
                ids = session.scalars(select(Mailbox.id).order_by(Mailbox.created_at))
                jobs += [MailboxSyncJob(organization_id=organization_id, mailbox_id=i) for i in ids]
        report = fan_out(
            jobs,
            settings=self.settings,
            queue_url=self.settings.mailbox_sync_queue_url,
            run_here=lambda job: self.sync(job.organization_id, job.mailbox_id),
            label=lambda job: f"mailbox:{job.mailbox_id}",
        )
        return {"mailboxes": len(jobs), **report}


def _owner(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:
        raise Forbidden(
            "a mailbox belongs to a user: use an API key made for a user, not a service key",
            code="mailbox_needs_user",
        )
    return principal.user_id


def _save_cursor(session: Session, mailbox: Mailbox, folder: str, uidvalidity: int, last_uid: int) -> None:
    statement = insert(MailboxFolder).values(
        mailbox_id=mailbox.id, folder=folder, uidvalidity=uidvalidity, last_uid=last_uid
    )
    # Never backwards within one UIDVALIDITY: two syncs of one mailbox at once (the schedule and
    # "sync now") store each message once (the Message-ID) and the cursor keeps the furthest.
    same = MailboxFolder.uidvalidity == statement.excluded.uidvalidity
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[MailboxFolder.mailbox_id, MailboxFolder.folder],
            set_={
                "uidvalidity": uidvalidity,
                "last_uid": case(
                    (same, func.greatest(MailboxFolder.last_uid, statement.excluded.last_uid)), else_=last_uid
                ),
                "updated_at": func.clock_timestamp(),
            },
        )
    )


def _notify_owner(session: Session, mailbox: Mailbox, error: str) -> None:
    from okyaku.anomalies.models import Notification

    session.add(
        Notification(
            user_id=mailbox.user_id,
            kind="mailbox",
            severity="high",
            title=f"Your mailbox {mailbox.username} stopped syncing",
            body=f"{error}\nFix the connection on the Mailboxes page (/console/mailboxes).",
            email_status="pending",  # e-mailed by the notifications delivery, like an anomaly's
        )
    )


def _split_name(name: str | None) -> tuple[str | None, str | None]:
    if not name or "@" in name:
        return None, None
    parts = name.replace('"', "").split()
    if not parts:
        return None, None
    return parts[0][:100], (" ".join(parts[1:])[:100] or None)
