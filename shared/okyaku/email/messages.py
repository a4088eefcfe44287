"""The message itself: headers and body of an outgoing e-mail, built the same way on every attempt
(so a retry carries the same Message-ID and Date), and the Message-ID made once."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol


class OutgoingMessage(Protocol):
    sender: str
    reply_to: str | None
    recipient: str
    subject: str
    body: str
    message_id: str
    in_reply_to: str | None
    references: str | None
    created_at: datetime


def new_message_id(sender: str) -> str:
    """``<unique@domain>`` on the sender's domain (RFC 5322 msg-id), generated once per e-mail."""
    domain = sender.rpartition("@")[2].strip().strip(">") or "okyaku.local"
    return make_msgid(domain=domain)


def reply_subject(subject: str | None) -> str:
    subject = (subject or "").strip()
    return subject if subject.lower().startswith("re:") else f"Re: {subject}".strip()


def references_for(parent_message_id: str, parent_references: str | None) -> str:
    """RFC 5322 3.6.4: the parent's References (or its In-Reply-To), then the parent's own id."""
    chain = (parent_references or "").split()
    if parent_message_id not in chain:
        chain.append(parent_message_id)
    return " ".join(chain[-20:])  # a long thread keeps its most recent ids


def build_message(email: OutgoingMessage) -> EmailMessage:
    message = EmailMessage()
    message["From"] = email.sender
    message["To"] = email.recipient
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.subject
    message["Date"] = format_datetime(email.created_at)
    message["Message-ID"] = email.message_id
    if email.in_reply_to:
        message["In-Reply-To"] = email.in_reply_to
    if email.references:
        message["References"] = email.references
    message["X-Mailer"] = "Okyaku"
    message.set_content(email.body)
    return message
