"""The outbox of outgoing e-mail: queue, claim, send, settle.

Queueing (``queue_email``) happens in the caller's transaction, with the e-mail's outbound
``email`` activity on the contact (and deal): either both exist or neither. The Message-ID is
generated there, once; every attempt sends the same message.

Sending is three steps, so that two workers never send the same e-mail and nothing is lost:

1. *claim* (its own transaction): ``SELECT ... FOR UPDATE SKIP LOCKED`` one due row, mark it
   ``sending`` under a lease, commit. Another worker skips the locked row, then sees ``sending``.
2. *send* through the transport, outside any transaction.
3. *settle* (its own transaction): ``sent``; or, for a transient failure, back to ``queued`` with
   a later ``next_attempt_at`` (doubling backoff) until ``EMAIL_MAX_ATTEMPTS``; or ``failed`` with
   the server's reason. The activity's ``email_status`` follows.

A worker that dies between 1 and 3 leaves the row ``sending``; once its lease is over another
worker sends it again with the same Message-ID (the outcome was unknown: the receiving side
recognises a duplicate by it).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.orm import Session

from okyaku.clock import utc_now
from okyaku.config import Settings
from okyaku.crm.listing import decode_cursor, encode_cursor, invalid_cursor
from okyaku.db.models import Activity, Contact, Deal, User
from okyaku.email.dispatch import EmailDispatcher, EmailJob, dispatcher_from_settings
from okyaku.email.messages import build_message, new_message_id, references_for
from okyaku.email.models import EMAIL_STATUSES, OutgoingEmail
from okyaku.errors import NotFound, OkyakuError, RateLimited, ValidationFailed, field_error
from okyaku.runtime import Runtime
from okyaku.tenancy import list_organization_ids

if TYPE_CHECKING:
    from okyaku.email.transports import Transport

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
MAX_BACKOFF = timedelta(hours=1)
SWEEP_PER_ORGANIZATION = 50  # per scheduled run: one organization's backlog cannot hold up the rest


@dataclass(frozen=True)
class EmailDraft:
    """What a person (or an approved proposal) asks to send."""

    contact_id: uuid.UUID
    subject: str
    body: str
    deal_id: uuid.UUID | None = None
    reply_to_activity_id: uuid.UUID | None = None


@dataclass(frozen=True)
class EmailFilters:
    status: str | None = None
    contact_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None


@dataclass
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DeliveryReport) -> None:
        self.sent += other.sent
        self.retrying += other.retrying
        self.failed += other.failed
        self.errors += other.errors

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "retrying": self.retrying, "failed": self.failed}


def backoff(attempts: int, base_s: float) -> timedelta:
    """Wait after the ``attempts``-th failed try: base, 2x, 4x ... capped at an hour."""
    return min(timedelta(seconds=base_s * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


# --- queueing (in the caller's transaction) -------------------------------------------------------


def check_hourly_limit(session: Session, settings: Settings, now: datetime) -> None:
    """429 once the organization queued EMAIL_HOURLY_LIMIT e-mails in the last hour. Concurrent
    requests of one organization take turns here (a transaction-level advisory lock), so the
    count cannot be raced past."""
    session.execute(
        text(
            "SELECT pg_advisory_xact_lock("
            "hashtextextended('okyaku.emails:' || current_setting('app.organization_id'), 0))"
        )
    )
    since = now - HOUR
    count, oldest = session.execute(
        select(func.count(), func.min(OutgoingEmail.created_at)).where(OutgoingEmail.created_at > since)
    ).one()
    limit = settings.email_hourly_limit
    if count >= limit:
        retry_after = max(int(((oldest or now) + HOUR - now).total_seconds()) + 1, 1)
        raise RateLimited(
            f"this organization has queued {count} e-mails in the last hour (limit {limit})",
            retry_after_s=retry_after,
            code="email_hourly_limit",
            details={"limit": limit, "window_s": 3600, "queued_in_window": count, "retry_after_s": retry_after},
        )


def sender_for(session: Session, settings: Settings, user_id: uuid.UUID | None) -> tuple[str, str | None]:
    """(From, Reply-To): the user's own address, else NOTIFICATIONS_EMAIL_FROM."""
    user = session.get(User, user_id) if user_id else None
    if user is not None and user.email:
        return user.email, None
    if settings.notifications_email_from:
        return settings.notifications_email_from, None
    raise ValidationFailed(
        "no sender: the caller has no e-mail address and NOTIFICATIONS_EMAIL_FROM is not set",
        code="no_sender",
        details=[field_error("from", "no address to send from")],
    )


def _reply_headers(session: Session, activity_id: uuid.UUID) -> tuple[str, str]:
    """(In-Reply-To, References) for an answer to the e-mail activity ``activity_id``."""
    parent = session.get(Activity, activity_id)
    if parent is None:
        raise ValidationFailed(
            "the activity to reply to does not exist",
            details=[field_error("reply_to_activity_id", "no such activity in this organization")],
        )
    if parent.type != "email" or not parent.message_id:
        raise ValidationFailed(
            "only an e-mail with a Message-ID can be replied to",
            code="not_an_email",
            details=[field_error("reply_to_activity_id", "not an e-mail activity with a Message-ID")],
        )
    ours = session.scalar(select(OutgoingEmail).where(OutgoingEmail.activity_id == activity_id))
    earlier = (ours.references or ours.in_reply_to) if ours is not None else None
    return parent.message_id, references_for(parent.message_id, earlier)


def _one_address(address: str) -> bool:
    """``address`` read as a header is exactly itself: one recipient, no display name, no list."""
    return getaddresses([address]) == [("", address)]


def queue_email(
    session: Session,
    settings: Settings,
    draft: EmailDraft,
    *,
    user_id: uuid.UUID | None,
    now: datetime,
    activity_id: uuid.UUID | None = None,
    pending_action_id: uuid.UUID | None = None,
) -> OutgoingEmail:
    """Queue ``draft`` in the session's transaction (an organization scope): checks, the hourly
    cap, the outbound activity (created here unless ``activity_id`` names one), the outbox row."""
    contact = session.get(Contact, draft.contact_id)
    if contact is None:
        raise ValidationFailed(
            "the contact does not exist", details=[field_error("contact_id", "no such contact in this organization")]
        )
    if not contact.email:
        raise ValidationFailed(
            "the contact has no e-mail address",
            code="no_email_address",
            details=[field_error("contact_id", "the contact has no e-mail address")],
        )
    if not _one_address(contact.email):
        # The contact schema takes ``a@b.example,postmaster`` (one @, no space): as a To header that
        # is a second recipient nobody chose.
        raise ValidationFailed(
            "the contact's e-mail address is not one address",
            code="invalid_recipient",
            details=[field_error("contact_id", "the contact's e-mail address names more than one recipient")],
        )
    if draft.deal_id is not None and session.get(Deal, draft.deal_id) is None:
        raise ValidationFailed(
            "the deal does not exist", details=[field_error("deal_id", "no such deal in this organization")]
        )
    subject = " ".join(draft.subject.split())  # one header line: a line break would be a header injection
    if not subject:
        raise ValidationFailed("the subject is empty", details=[field_error("subject", "write a subject")])
    in_reply_to, references = (
        _reply_headers(session, draft.reply_to_activity_id) if draft.reply_to_activity_id else (None, None)
    )
    check_hourly_limit(session, settings, now)
    sender, reply_to = sender_for(session, settings, user_id)
    message_id = new_message_id(sender)
    # Imported here, not at module level: the function's cold start needs only what its routes read.
    from okyaku.crm.records import ACTIVITY_SPEC, ActivityService
    from okyaku.crm.schemas import ActivityCreate

    activities = ActivityService(ACTIVITY_SPEC)
    if activity_id is None:
        activity = activities.create(
            session,
            ActivityCreate(
                type="email",
                direction="outbound",
                subject=subject,
                body=draft.body,
                occurred_at=now,
                contact_id=contact.id,
                deal_id=draft.deal_id,
                company_id=contact.company_id,
                custom_properties={"email_status": "queued", "email_to": contact.email},
            ),
            actor=user_id,
        )
        activity_id = activity.id
    # Not a client field (ActivityCreate has none): set once, without a new version of the record.
    session.execute(update(Activity).where(Activity.id == activity_id).values(message_id=message_id))
    email = OutgoingEmail(
        activity_id=activity_id,
        contact_id=contact.id,
        deal_id=draft.deal_id,
        created_by=user_id,
        pending_action_id=pending_action_id,
        sender=sender,
        reply_to=reply_to,
        recipient=contact.email,
        subject=subject,
        body=draft.body,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=references,
        status="queued",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
    )
    session.add(email)
    session.flush()
    return email


# --- the worker's steps ---------------------------------------------------------------------------


def claim_next(
    session: Session, now: datetime, lease: timedelta, email_id: uuid.UUID | None = None
) -> OutgoingEmail | None:
    """Step 1: lock one due e-mail (skipping rows another worker holds) and mark it ``sending``."""
    due = or_(
        and_(OutgoingEmail.status == "queued", OutgoingEmail.next_attempt_at <= now),
        and_(OutgoingEmail.status == "sending", OutgoingEmail.lease_until <= now),
    )
    statement = select(OutgoingEmail).where(due)
    if email_id is not None:
        statement = statement.where(OutgoingEmail.id == email_id)
    statement = statement.order_by(OutgoingEmail.next_attempt_at).limit(1).with_for_update(skip_locked=True)
    email = session.scalars(statement).first()
    if email is None:
        return None
    email.status = "sending"
    email.attempts += 1
    email.lease_until = now + lease
    email.updated_at = now
    session.flush()
    session.expunge(email)
    return email


def _set_activity_status(session: Session, email: OutgoingEmail, status: str, error: str | None) -> None:
    """The activity's ``email_status`` follows the outbox. In a savepoint: an activity deleted or
    edited meanwhile must not keep the outcome from being recorded (that would send it again)."""
    if email.activity_id is None:
        return
    from okyaku.crm.records import ACTIVITY_SPEC, ActivityService
    from okyaku.crm.schemas import ActivityUpdate

    properties: dict[str, Any] = {"email_status": status}
    if error:
        properties["email_error"] = error[:500]
    try:
        with session.begin_nested():
            ActivityService(ACTIVITY_SPEC).update(
                session, email.activity_id, ActivityUpdate(custom_properties=properties)
            )
    except OkyakuError as problem:
        logger.warning("e-mail %s: its activity's status not updated (%s)", email.id, problem.message)


@dataclass(frozen=True)
class Outcome:
    email_id: uuid.UUID
    status: str
    error: str | None = None


class EmailService:
    def __init__(
        self,
        runtime: Runtime,
        *,
        transport: Transport | None = None,
        dispatcher: EmailDispatcher | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.clock = clock
        self._transport = transport
        self._dispatcher = dispatcher

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            from okyaku.email.transports import transport_from_settings  # smtplib, ssl: on first send

            self._transport = transport_from_settings(self.settings)
        return self._transport

    @property
    def dispatcher(self) -> EmailDispatcher:
        if self._dispatcher is None:
            self._dispatcher = dispatcher_from_settings(self.settings, self.run_job)
        return self._dispatcher

    # --- the API's side ---------------------------------------------------------------------

    def queue(self, organization_id: uuid.UUID, user_id: uuid.UUID | None, draft: EmailDraft) -> OutgoingEmail:
        with self.runtime.transaction(organization_id) as session:
            email = queue_email(session, self.settings, draft, user_id=user_id, now=self.clock())
            session.expunge(email)
        self.notify(organization_id, email.id)
        return email

    def notify(self, organization_id: uuid.UUID, email_id: uuid.UUID) -> None:
        """After commit: have a worker send it now. A failure here loses nothing (the sweep sends it)."""
        try:
            self.dispatcher.dispatch(EmailJob(job="send", organization_id=organization_id, email_id=email_id))
        except Exception:
            logger.exception("could not hand e-mail %s to a worker; the sweep will send it", email_id)

    def get(self, organization_id: uuid.UUID, email_id: uuid.UUID) -> OutgoingEmail:
        with self.runtime.db.organization_scope(organization_id) as session:
            email = session.get(OutgoingEmail, email_id)
            if email is None:
                raise NotFound(f"e-mail {email_id} not found", details={"id": str(email_id)})
            session.expunge(email)
            return email

    def list(
        self, organization_id: uuid.UUID, filters: EmailFilters, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[OutgoingEmail], str | None]:
        """Newest first, keyset-paged on (created_at, id)."""
        if filters.status is not None and filters.status not in EMAIL_STATUSES:
            raise ValidationFailed(
                "unknown status", details=[field_error("status", f"one of {', '.join(EMAIL_STATUSES)}")]
            )
        statement = select(OutgoingEmail)
        for column, value in (
            (OutgoingEmail.status, filters.status),
            (OutgoingEmail.contact_id, filters.contact_id),
            (OutgoingEmail.deal_id, filters.deal_id),
        ):
            if value is not None:
                statement = statement.where(column == value)
        if cursor:
            sort, value, last_id = decode_cursor(cursor)
            if sort != "-created_at" or value is None:
                raise invalid_cursor()
            try:
                moment = datetime.fromisoformat(value)
            except ValueError as error:
                raise invalid_cursor() from error
            statement = statement.where(
                or_(
                    OutgoingEmail.created_at < moment,
                    and_(OutgoingEmail.created_at == moment, OutgoingEmail.id < last_id),
                )
            )
        statement = statement.order_by(OutgoingEmail.created_at.desc(), OutgoingEmail.id.desc()).limit(limit + 1)
        with self.runtime.db.organization_scope(organization_id) as session:
            rows = list(session.scalars(statement))
            for row in rows:
                session.expunge(row)
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor("-created_at", rows[-1].created_at.isoformat(), rows[-1].id)
        return rows, next_cursor

    # --- the worker's side ------------------------------------------------------------------

    def deliver(self, organization_id: uuid.UUID, email_id: uuid.UUID | None = None) -> Outcome | None:
        """Claim, send and settle one due e-mail (``email_id``'s, else the next due); None when
        there is none (sent already, another worker has it, or its retry is not due yet)."""
        from okyaku.email.transports import DeliveryFailure

        lease = timedelta(seconds=self.settings.email_send_lease_s)
        with self.runtime.db.organization_scope(organization_id) as session:
            email = claim_next(session, self.clock(), lease, email_id)
        if email is None:
            return None
        if email.attempts > self.settings.email_max_attempts:
            # Claimed again after its lease ran out: every earlier worker died before settling (a
            # timeout, out of memory). Another try could be another copy in the inbox: give up.
            return self._settle(
                organization_id,
                email,
                None,
                f"gave up after {email.attempts - 1} attempts: the last one's worker stopped before it finished "
                "(its outcome is unknown)",
                restore_attempts=True,
            )
        if email.activity_id is None:
            # The activity (or its contact) was deleted while the e-mail waited: deleting cancels.
            return self._settle(organization_id, email, None, "its activity was deleted before it was sent")
        try:
            message = build_message(email)
        except (ValueError, TypeError) as error:  # a header the e-mail library refuses: never sendable
            return self._settle(organization_id, email, None, f"the message could not be built: {error}")
        try:
            provider_id = self.transport.send(message)
        except DeliveryFailure as failure:
            logger.warning("e-mail %s attempt %d failed: %s", email.id, email.attempts, failure.reason)
            return self._settle(organization_id, email, None, failure.reason, permanent=failure.permanent)
        except Exception as error:  # anything else is retried like a transient failure, then failed
            logger.exception("e-mail %s attempt %d failed unexpectedly", email.id, email.attempts)
            return self._settle(organization_id, email, None, f"unexpected error: {error!r}", permanent=False)
        return self._settle(organization_id, email, provider_id, None)

    def _settle(
        self,
        organization_id: uuid.UUID,
        claimed: OutgoingEmail,
        provider_id: str | None,
        error: str | None,
        *,
        permanent: bool = True,
        restore_attempts: bool = False,
    ) -> Outcome:
        now = self.clock()
        with self.runtime.transaction(organization_id) as session:
            email = session.get(OutgoingEmail, claimed.id, with_for_update=True, populate_existing=True)
            if email is None or email.status != "sending" or email.attempts != claimed.attempts:
                # Our lease ran out and another worker took the e-mail over: its outcome is the one kept.
                logger.warning("e-mail %s was taken over while this attempt ran; not settling it", claimed.id)
                return Outcome(claimed.id, email.status if email else "gone", error)
            if restore_attempts:  # this claim sent nothing: it is not an attempt
                email.attempts -= 1
            email.lease_until = None
            email.updated_at = now
            email.last_error = error
            if error is None:
                email.status, email.sent_at = "sent", now
                email.transport = self.transport.name
                email.provider_message_id = provider_id
                _set_activity_status(session, email, "sent", None)
            elif not permanent and email.attempts < self.settings.email_max_attempts:
                email.status = "queued"
                email.next_attempt_at = now + backoff(email.attempts, self.settings.email_retry_base_s)
            else:
                email.status = "failed"
                if not permanent:
                    email.last_error = f"gave up after {email.attempts} attempts: {error}"[:1000]
                _set_activity_status(session, email, "failed", email.last_error)
            session.flush()
            return Outcome(email.id, email.status, email.last_error)

    def deliver_due(self, organization_id: uuid.UUID, limit: int = SWEEP_PER_ORGANIZATION) -> DeliveryReport:
        report = DeliveryReport()
        for _ in range(limit):
            outcome = self.deliver(organization_id)
            if outcome is None:
                break
            if outcome.status == "sent":
                report.sent += 1
            elif outcome.status == "failed":
                report.failed += 1
                report.errors.append(outcome.error or "")
            else:
                report.retrying += 1
        return report

    def run_job(self, job: EmailJob) -> dict[str, Any]:
        """One queue message: send one e-mail, or sweep one organization."""
        if job.job == "send" and job.email_id is not None:
            outcome = self.deliver(job.organization_id, job.email_id)
            return {"email_id": str(job.email_id), "status": outcome.status if outcome else "not_due"}
        return self.deliver_due(job.organization_id).as_dict()

    def on_record(self, record: Any) -> dict[str, Any]:
        """The SQS trigger. A transient send failure is settled in the outbox (retried by the
        sweep), not raised: only what could not be recorded (the database down) is redelivered."""
        return self.run_job(EmailJob.model_validate_json(record.body))

    def sweep(self, _event: Mapping[str, Any] | None = None, _context: Any = None) -> dict[str, Any]:
        """The schedule: every organization's due e-mails (retries, and any whose message was lost)."""
        total = DeliveryReport()
        failed: list[dict[str, str]] = []
        organizations = list_organization_ids(self.runtime.db)
        for organization_id in organizations:
            try:
                total.add(self.deliver_due(organization_id))
            except Exception as error:  # one organization's trouble must not hold up the others
                logger.exception("e-mail sweep of organization %s failed", organization_id)
                failed.append({"organization_id": str(organization_id), "error": type(error).__name__})
        return {"organizations": len(organizations), **total.as_dict(), "organizations_failed": failed}
