"""One synced message into the CRM, inside the caller's organization-scoped transaction.

- Stored once: an activity with the message's Message-ID already exists (stored by an earlier
  sync, another user's mailbox, or the outbox that sent it — the copy in Sent of our own message)
  → nothing new. Two syncs racing for the same message: the unique index decides, the loser's
  savepoint is rolled back and the message counts as known.
- Direction: from one of the organization's own addresses (its users' addresses, their company
  domains) → outbound; else inbound. A message with no outside party is internal: ignored.
- Contact: the outside party's address (the sender of an inbound message, the first recipient
  with a contact of an outbound one); a reply with no known address inherits the contact, deal and
  company of the activity it answers (In-Reply-To, then References, nearest first).
- An unknown outside sender is returned to the caller, which proposes the contact through the
  approval queue after the commit: never created here. Automated mail (lists, bulk, auto-replies,
  noreply@ senders) from nobody the CRM knows, outside a known thread, is not stored at all.
- Written through the CRM's activity service, so the change event (embeddings, conversation
  analysis) is recorded in the same transaction, as for an activity written through the API.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from okyaku.crm.entities import ENTITIES
from okyaku.crm.schemas import ActivityCreate, ActivityUpdate
from okyaku.db.models import Activity, Contact, User
from okyaku.mailboxes.messages import ParsedMessage, domain_of, normalise_address

# Mail providers whose domain a colleague may share with customers: never an internal *domain*
# (a user's own address on one of them still is internal).
SHARED_MAIL_DOMAINS = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "yahoo.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "web.de",
        "mail.com",
        "yandex.ru",
        "zoho.com",
        "fastmail.com",
    }
)

Outcome = Literal["created", "known", "internal", "no_sender", "automated"]


class SyncedEmail(ActivityCreate):
    """An e-mail activity with its Message-ID, which only the sync and the outbox set."""

    message_id: str


@dataclass(frozen=True)
class Directory:
    """Who is "us": the organization's user addresses and their company domains."""

    addresses: frozenset[str]
    domains: frozenset[str]

    def is_internal(self, address: str) -> bool:
        return address in self.addresses or domain_of(address) in self.domains


def load_directory(session: Session, extra_addresses: Iterable[str] = ()) -> Directory:
    addresses = {a for a in (normalise_address(e) for e in session.scalars(select(User.email))) if a}
    addresses |= {a for a in (normalise_address(e) for e in extra_addresses) if a}
    domains = {domain_of(a) for a in addresses} - SHARED_MAIL_DOMAINS
    return Directory(frozenset(addresses), frozenset(domains))


@dataclass(frozen=True)
class UnknownSender:
    address: str
    name: str | None


@dataclass
class StoreResult:
    outcome: Outcome
    activity_id: uuid.UUID | None = None
    unknown_senders: list[UnknownSender] = field(default_factory=list)


@dataclass(frozen=True)
class Origin:
    """Where the message was found."""

    owner_id: uuid.UUID
    mailbox_id: uuid.UUID
    folder: str


def store_message(
    session: Session, message: ParsedMessage, *, origin: Origin, directory: Directory, now: datetime
) -> StoreResult:
    if session.scalar(select(Activity.id).where(Activity.message_id == message.message_id)) is not None:
        return StoreResult("known")
    if message.from_address is None:
        return StoreResult("no_sender")
    outbound = directory.is_internal(message.from_address)
    outside = [a for a in message.recipients if not directory.is_internal(a)] if outbound else [message.from_address]
    if not outside:
        return StoreResult("internal")

    contacts = _contacts_by_address(session, outside)
    parent = _thread_parent(session, message.thread_ids)
    contact = next((contacts[a] for a in outside if a in contacts), None)
    if message.automated and contact is None and parent is None:
        return StoreResult("automated")  # a newsletter or notification from nobody the CRM knows
    contact_id = contact.id if contact else (parent.contact_id if parent else None)
    company_id = (contact.company_id if contact else None) or (parent.company_id if parent else None)
    deal_id = parent.deal_id if parent else None

    properties: dict[str, str | int | float | bool | None] = {
        "email_from": message.from_address,
        "email_to": ", ".join(message.to)[:2000],
        "email_cc": ", ".join(message.cc)[:2000] or None,
        "email_thread_id": (message.references[0] if message.references else None)
        or (parent.custom_properties.get("email_thread_id") if parent else None)
        or (message.in_reply_to[0] if message.in_reply_to else message.message_id),
        "email_reply_to_activity_id": str(parent.id) if parent else None,
        "email_folder": origin.folder,
        "email_attachment_count": len(message.attachments),
        "email_attachments": json.dumps(
            [{"name": a.name, "type": a.content_type, "size": a.size} for a in message.attachments]
        )[:4000]
        if message.attachments
        else None,
        "email_body_truncated": message.body_truncated,
    }
    data = SyncedEmail(
        type="email",
        subject=message.subject or "(no subject)",
        body=message.body,
        occurred_at=message.sent_at or now,
        direction="outbound" if outbound else "inbound",
        owner_id=origin.owner_id,
        contact_id=contact_id,
        company_id=company_id,
        deal_id=deal_id,
        custom_properties={k: v for k, v in properties.items() if v is not None},
        message_id=message.message_id,
    )
    try:
        with session.begin_nested():
            activity = ENTITIES["activity"].service.create(session, data, actor=origin.owner_id)
    except IntegrityError:
        # Another sync stored it between our check and our insert (ux_activities_org_message_id).
        if session.scalar(select(Activity.id).where(Activity.message_id == message.message_id)) is not None:
            return StoreResult("known")
        raise
    unknown = (
        [] if outbound or contact or message.automated else [UnknownSender(message.from_address, message.from_name)]
    )
    return StoreResult("created", activity.id, unknown)


def _contacts_by_address(session: Session, addresses: list[str]) -> dict[str, Contact]:
    rows = session.scalars(
        select(Contact).where(func.lower(Contact.email).in_(addresses)).order_by(Contact.created_at, Contact.id)
    )
    found: dict[str, Contact] = {}
    for contact in rows:
        found.setdefault((contact.email or "").lower(), contact)
    return found


def _thread_parent(session: Session, thread_ids: tuple[str, ...]) -> Activity | None:
    if not thread_ids:
        return None
    rows = {a.message_id: a for a in session.scalars(select(Activity).where(Activity.message_id.in_(thread_ids)))}
    return next((rows[i] for i in thread_ids if i in rows), None)


def link_to_new_contacts(session: Session, owner_id: uuid.UUID, *, limit: int = 200) -> int:
    """Inbound e-mails stored before their sender was a contact (the proposal since approved, or
    the contact added by hand) are linked to that contact now, through the CRM service (an update
    event each). Returns how many were linked."""
    rows = session.execute(
        text(
            """
            SELECT DISTINCT ON (a.id) a.id, c.id AS contact_id, c.company_id
            FROM activities a
            JOIN contacts c ON lower(c.email) = a.custom_properties->>'email_from'
            WHERE a.type = 'email' AND a.direction = 'inbound' AND a.contact_id IS NULL
              AND a.message_id IS NOT NULL AND a.owner_id = :owner
            ORDER BY a.id, c.created_at, c.id
            LIMIT :limit
            """
        ),
        {"owner": owner_id, "limit": limit},
    ).all()
    service = ENTITIES["activity"].service
    for row in rows:
        patch = ActivityUpdate(contact_id=row.contact_id)
        if row.company_id is not None:
            patch = ActivityUpdate(contact_id=row.contact_id, company_id=row.company_id)
        service.update(session, row.id, patch, actor=owner_id)
    return len(rows)
