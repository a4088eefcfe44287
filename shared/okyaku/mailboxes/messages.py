"""One RFC 5322 message read into what the CRM keeps of it (pure functions, no I/O).

Kept: the Message-ID and the threading headers (In-Reply-To, References), the addresses, the
subject and date, the text (text/plain preferred; HTML turned into text), capped, and the list of
attachments (name, type, size) — never their content.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# Senders that are machines, not people: never proposed as contacts.
AUTOMATED_LOCAL_PART = re.compile(
    r"^(no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?|notifications?|newsletter|news|marketing)([+.\-_].*)?$"
)
TRUNCATED = "\n[… truncated]"


@dataclass(frozen=True)
class Attachment:
    name: str
    content_type: str
    size: int


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str  # "<...>"; synthesised from the content when the message has none
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    from_address: str | None
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    sent_at: datetime | None
    body: str
    body_truncated: bool
    attachments: tuple[Attachment, ...] = field(default_factory=tuple)
    automated: bool = False  # a list, bulk or auto-generated message (newsletters, notifications, bounces)

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """The messages this one answers, nearest first (In-Reply-To, then References backwards)."""
        seen: dict[str, None] = {}
        for value in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(value, None)
        return tuple(seen)

    @property
    def recipients(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.to, *self.cc)))


def normalise_address(address: str) -> str | None:
    address = address.strip().strip("<>").lower()
    if "@" not in address or " " in address or len(address) > 320:
        return None
    return address


def domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def message_ids(value: str | None) -> tuple[str, ...]:
    """The ``<id>`` tokens of a Message-ID / In-Reply-To / References header, in order."""
    if not value:
        return ()
    return tuple(dict.fromkeys(token for token in MESSAGE_ID.findall(str(value)) if len(token) <= 998))


def _addresses(message: Message, header: str) -> tuple[list[str], list[str]]:
    values = [str(v) for v in message.get_all(header, [])]
    names, found = [], []
    for name, address in getaddresses(values):
        normal = normalise_address(address)
        if normal and normal not in found:
            found.append(normal)
            names.append(name)
    return found, names


class _TextFromHtml(HTMLParser):
    """Visible text of an HTML body: scripts and styles dropped, blocks on their own lines."""

    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table"})
    HIDDEN = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextFromHtml()
    parser.feed(html)
    parser.close()
    lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in "".join(parser.parts).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _text_of(part: Message) -> str:
    try:
        content = part.get_content() if isinstance(part, EmailMessage) else part.get_payload(decode=True)
    except (LookupError, ValueError):  # an unknown charset: decode what can be decoded
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload or "")
    if isinstance(content, bytes):
        content = content.decode(part.get_content_charset() or "utf-8", "replace")
    return str(content or "")


def _is_attachment(part: Message) -> bool:
    disposition = (part.get_content_disposition() or "").lower()
    return disposition == "attachment" or (disposition == "inline" and bool(part.get_filename()))


def _body_and_attachments(message: Message) -> tuple[str, list[Attachment]]:
    plain: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        if _is_attachment(part) or not content_type.startswith("text/"):
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            name = part.get_filename() or f"unnamed.{part.get_content_subtype()}"
            attachments.append(Attachment(name=str(name)[:255], content_type=content_type, size=size))
        elif content_type == "text/plain":
            plain.append(_text_of(part))
        elif content_type == "text/html":
            html.append(html_to_text(_text_of(part)))
    text = "\n\n".join(p.strip() for p in plain if p.strip()) or "\n\n".join(h for h in html if h)
    return text.replace("\r\n", "\n").strip(), attachments


def cap(text: str, max_chars: int) -> tuple[str, bool]:
    if len(text) <= max_chars:
        return text, False
    return text[: max_chars - len(TRUNCATED)].rstrip() + TRUNCATED, True


def is_automated(message: Message, sender: str | None) -> bool:
    """Mailing lists (List-Id, List-Unsubscribe), bulk mail (Precedence), auto-generated mail
    (Auto-Submitted, RFC 3834) and machine senders (noreply@, mailer-daemon@...)."""
    if message.get("list-id") or message.get("list-unsubscribe"):
        return True
    if str(message.get("precedence") or "").strip().lower() in ("bulk", "list", "junk"):
        return True
    if str(message.get("auto-submitted") or "no").strip().lower() != "no":
        return True
    return bool(sender and AUTOMATED_LOCAL_PART.match(sender.split("@", 1)[0]))


def parse_message(raw: bytes, *, max_body_chars: int, headers_only: bool = False) -> ParsedMessage:
    """``raw``: the message as fetched (``headers_only``: only its header, for one too big to fetch)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    from_addresses, from_names = _addresses(message, "from")
    to, _ = _addresses(message, "to")
    cc, _ = _addresses(message, "cc")
    subject = re.sub(r"\s+", " ", str(message.get("subject") or "")).strip()
    sent_at: datetime | None = None
    try:
        if message.get("date"):
            sent_at = parsedate_to_datetime(str(message["date"]))
            if sent_at.tzinfo is None:
                sent_at = sent_at.replace(tzinfo=UTC)
    except (TypeError, ValueError):
        sent_at = None
    body, attachments = ("", []) if headers_only else _body_and_attachments(message)
    body, truncated = cap(body, max_body_chars)
    own_ids = message_ids(str(message.get("message-id") or ""))
    message_id = own_ids[0] if own_ids else synthetic_message_id(raw)
    return ParsedMessage(
        message_id=message_id,
        in_reply_to=message_ids(str(message.get("in-reply-to") or "")),
        references=message_ids(str(message.get("references") or "")),
        from_address=from_addresses[0] if from_addresses else None,
        from_name=(from_names[0] or None) if from_names else None,
        to=tuple(to),
        cc=tuple(cc),
        subject=subject[:500],
        sent_at=sent_at,
        body=body,
        body_truncated=truncated or headers_only,
        attachments=tuple(attachments),
        automated=is_automated(message, from_addresses[0] if from_addresses else None),
    )


def synthetic_message_id(raw: bytes) -> str:
    """A message without a Message-ID still has to be stored once: an id from its content."""
    return f"<{hashlib.sha256(raw).hexdigest()[:40]}@no-message-id.okyaku>"
