"""The outbox of outgoing e-mail (migration 0018); RLS is forced on it like every tenant table."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from okyaku.db.models import Base, org_fk, uuid_pk

EMAIL_STATUSES = ("queued", "sending", "sent", "failed")


def _link(table: str) -> Mapped[uuid.UUID | None]:
    return mapped_column(UUID(as_uuid=True), ForeignKey(f"{table}.id", ondelete="SET NULL"))


def _at(*, default: bool) -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), nullable=not default, server_default=text("clock_timestamp()") if default else None
    )


class OutgoingEmail(Base):
    __tablename__ = "emails"
    __table_args__ = (
        CheckConstraint(f"status IN {EMAIL_STATUSES}", name="email_status_valid"),
        Index("ux_emails_org_message_id", "organization_id", "message_id", unique=True),
        Index("ix_emails_org_created", "organization_id", "created_at"),
        Index("ix_emails_activity", "activity_id"),
        Index(
            "ix_emails_due",
            "organization_id",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'sending')"),
        ),
        Index(
            "ux_emails_pending_action",
            "pending_action_id",
            unique=True,
            postgresql_where=text("pending_action_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    activity_id: Mapped[uuid.UUID | None] = _link("activities")
    contact_id: Mapped[uuid.UUID | None] = _link("contacts")
    deal_id: Mapped[uuid.UUID | None] = _link("deals")
    created_by: Mapped[uuid.UUID | None] = _link("users")
    pending_action_id: Mapped[uuid.UUID | None] = _link("pending_actions")
    sender: Mapped[str] = mapped_column(String(320), nullable=False)
    reply_to: Mapped[str | None] = mapped_column(String(320))
    recipient: Mapped[str] = mapped_column(String(320), nullable=False)
    subject: Mapped[str] = mapped_column(String(500), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    message_id: Mapped[str] = mapped_column(String(998), nullable=False)
    in_reply_to: Mapped[str | None] = mapped_column(String(998))
    references: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), nullable=False, server_default="queued")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime] = _at(default=True)
    lease_until: Mapped[datetime | None] = _at(default=False)
    last_error: Mapped[str | None] = mapped_column(Text)
    transport: Mapped[str | None] = mapped_column(String(10))
    provider_message_id: Mapped[str | None] = mapped_column(String(998))
    created_at: Mapped[datetime] = _at(default=True)
    sent_at: Mapped[datetime | None] = _at(default=False)
    updated_at: Mapped[datetime] = _at(default=True)
