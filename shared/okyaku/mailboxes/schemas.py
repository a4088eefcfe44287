"""Request and response bodies of /api/v1/mailboxes (the console's forms use the same)."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator, model_validator

from okyaku.mailboxes.models import DEFAULT_FOLDERS

TlsMode = Literal["ssl", "starttls", "none"]
Hostname = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9.\-:\[\]]+$")
]
Folder = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _MailboxFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("folders", check_fields=False)
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return list(dict.fromkeys(value))


class MailboxCreate(_MailboxFields):
    imap_host: Hostname = Field(description="The IMAP server, e.g. imap.gmail.com or outlook.office365.com")
    imap_port: int = Field(default=993, ge=1, le=65535)
    tls_mode: TlsMode = Field(
        default="ssl", description="ssl (port 993), starttls (port 143), none (only to a loopback server)"
    )
    username: Username = Field(description="Usually the e-mail address")
    password: SecretStr = Field(
        min_length=1, max_length=1000, description="The password or app password; stored encrypted, never returned"
    )
    folders: list[Folder] = Field(
        default_factory=lambda: list(DEFAULT_FOLDERS),
        min_length=1,
        max_length=20,
        description='Folders to sync; "\\\\Sent" means the server\'s sent-mail folder, whatever its name',
    )

    @model_validator(mode="after")
    def _tls_off_only_to_loopback(self) -> MailboxCreate:
        if self.tls_mode == "none" and not is_loopback(self.imap_host):
            raise ValueError("tls_mode none sends the password in clear: only allowed to a loopback server")
        return self


class MailboxUpdate(_MailboxFields):
    imap_host: Hostname | None = None
    imap_port: int | None = Field(default=None, ge=1, le=65535)
    tls_mode: TlsMode | None = None
    username: Username | None = None
    password: SecretStr | None = Field(default=None, min_length=1, max_length=1000)
    folders: list[Folder] | None = Field(default=None, min_length=1, max_length=20)


class MailboxOut(BaseModel):
    """A mailbox connection as the API shows it: never its password."""

    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    user_id: uuid.UUID
    imap_host: str
    imap_port: int
    tls_mode: TlsMode
    username: str
    folders: list[str]
    status: Literal["pending", "ok", "error"] = Field(description="pending: never synced; error: see last_error")
    last_error: str | None
    last_error_at: datetime | None
    last_synced_at: datetime | None
    messages_synced: int = Field(description="Activities this mailbox created")
    created_at: datetime
    updated_at: datetime


class FolderReport(BaseModel):
    folder: str
    uidvalidity: int
    reset: bool = Field(description="UIDVALIDITY changed: the folder was read again from the start (no duplicates)")
    fetched: int
    created: int
    known: int
    ignored: int
    last_uid: int
    more: bool = Field(description="more new messages than one run takes: the next run goes on")


class SyncReport(BaseModel):
    mailbox_id: uuid.UUID
    status: Literal["ok", "error", "skipped"]
    error: str | None = None
    error_kind: str | None = None
    folders: list[FolderReport] = Field(default_factory=list)
    missing_folders: list[str] = Field(default_factory=list)
    proposed_contacts: list[str] = Field(default_factory=list)
    linked: int = Field(default=0, description="earlier e-mails linked to a sender who has become a contact since")
    seconds: float = 0.0

    @property
    def created(self) -> int:
        return sum(f.created for f in self.folders)


class SyncNowOut(BaseModel):
    queued: bool = Field(description="true: the sync job was put on the queue; false: it ran now (report)")
    report: SyncReport | None = None
