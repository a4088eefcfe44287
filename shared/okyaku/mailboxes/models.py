"""Tables of the mailbox sync (migration 0019): a user's IMAP connections and, per folder, the
UID cursor of the incremental sync. Both carry their organization; RLS is forced on both."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from okyaku.db.models import Base, org_fk, uuid_pk

TLS_MODES = ("ssl", "starttls", "none")
MAILBOX_STATUSES = ("pending", "ok", "error")
# A folder entry starting with a backslash names a special-use attribute (RFC 6154): "\\Sent" is
# whatever folder the server marks as the sent mail ("Sent", "Sent Items", "[Gmail]/Sent Mail").
DEFAULT_FOLDERS = ("INBOX", "\\Sent")


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()"))


class Mailbox(Base):
    __tablename__ = "mailboxes"
    __table_args__ = (
        UniqueConstraint("organization_id", "user_id", "imap_host", "username", name="uq_mailboxes_user_account"),
        CheckConstraint(f"tls_mode IN {TLS_MODES}", name="mailbox_tls_mode_valid"),
        CheckConstraint(f"status IN {MAILBOX_STATUSES}", name="mailbox_status_valid"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    imap_host: Mapped[str] = mapped_column(String(255), nullable=False)
    imap_port: Mapped[int] = mapped_column(Integer, nullable=False)
    tls_mode: Mapped[str] = mapped_column(String(10), nullable=False)
    username: Mapped[str] = mapped_column(String(320), nullable=False)
    # Fernet token of the password (MAILBOX_ENCRYPTION_KEY); never returned by any API.
    password_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    folders: Mapped[list[Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[str] = mapped_column(String(10), nullable=False, server_default="pending")
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    messages_synced: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class MailboxFolder(Base):
    """Where the sync of one folder stands: its UIDVALIDITY and the highest UID handled."""

    __tablename__ = "mailbox_folders"
    mailbox_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)
    folder: Mapped[str] = mapped_column(String(500), primary_key=True)
    organization_id: Mapped[uuid.UUID] = org_fk()
    uidvalidity: Mapped[int] = mapped_column(BigInteger, nullable=False)
    last_uid: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    updated_at: Mapped[datetime] = _now()
