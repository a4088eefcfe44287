"""E-mail: SES through boto3 (``okyaku.aws``, honouring ``AWS_ENDPOINT_URL``), the messages
rendered from string templates (HTML, every value escaped, and plain text).

Delivery is a small state machine on the notification row: ``pending`` rows are claimed with
``FOR UPDATE SKIP LOCKED`` (two runs never send the same one), sent, and marked ``sent`` with
SES's message id in the same transaction; a failure keeps the row ``pending`` with the error
and a later attempt time (exponential backoff), so nothing is lost and a sent row is never sent
again. (If the process dies between SES accepting a message and the commit, that one message
can go out twice: SES has no idempotency key.)"""

from __future__ import annotations

import html
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from string import Template
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.orm import Session

from okyaku.config import Settings

logger = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=6)


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    html: str
    text: str


class Mailer(Protocol):
    def send(self, email: Email) -> str:
        """Send and return the provider's message id; raise on failure."""
        ...


class SesMailer:
    def __init__(self, sender: str, *, endpoint_url: str = "", region: str = "us-east-1") -> None:
        self.sender = sender
        self.endpoint_url = endpoint_url
        self.region = region
        self._client: Any = None

    def send(self, email: Email) -> str:
        if self._client is None:
            from okyaku.aws import boto3_client

            self._client = boto3_client("ses", endpoint_url=self.endpoint_url, region=self.region)
        response = self._client.send_email(
            Source=self.sender,
            Destination={"ToAddresses": [email.to]},
            Message={
                "Subject": {"Data": email.subject, "Charset": "UTF-8"},
                "Body": {
                    "Text": {"Data": email.text, "Charset": "UTF-8"},
                    "Html": {"Data": email.html, "Charset": "UTF-8"},
                },
            },
        )
        return str(response["MessageId"])


def notification_mailer(settings: Settings) -> Mailer | None:
    """None without ``NOTIFICATIONS_EMAIL_FROM``; the SMTP server every e-mail uses when one is
    configured (``okyaku.email``: under ``okyaku dev``, its local catcher); else SES's
    ``SendEmail`` (HTML and text)."""
    if not settings.notifications_email_from:
        return None
    from okyaku.email.transports import SmtpTransport, TransportMailer, transport_from_settings

    transport = transport_from_settings(settings)
    if isinstance(transport, SmtpTransport):
        return TransportMailer(settings.notifications_email_from, transport)
    return SesMailer(
        settings.notifications_email_from, endpoint_url=settings.aws_endpoint_url, region=settings.aws_region
    )


# --- templates ---------------------------------------------------------------------------------

_HTML_PAGE = Template(
    """<!doctype html>
<html><body style="font-family: sans-serif; color: #222">
<h2>$heading</h2>
$content
<p style="color: #777; font-size: 12px">Okyaku &middot; $footer</p>
</body></html>"""
)
_HTML_ITEM = Template('<li><strong>[$severity] $title</strong><br><span style="color:#555">$body</span></li>')


def _items_html(items: Sequence[tuple[str, str, str]]) -> str:
    if not items:
        return ""
    rows = "\n".join(
        _HTML_ITEM.substitute(severity=html.escape(s), title=html.escape(t), body=html.escape(b)) for s, t, b in items
    )
    return f"<ul>\n{rows}\n</ul>"


def _items_text(items: Sequence[tuple[str, str, str]]) -> str:
    return "\n".join(f"- [{s}] {t}\n  {b}" for s, t, b in items)


def anomaly_email(to: str, severity: str, title: str, body: str) -> Email:
    items = [(severity, title, body)]
    return Email(
        to=to,
        subject=f"[Okyaku] {severity.capitalize()}: {title}"[:200],
        html=_HTML_PAGE.substitute(
            heading="An anomaly needs your attention",
            content=_items_html(items),
            footer="sent once per anomaly; see /api/v1/ai/anomalies",
        ),
        text=f"An anomaly needs your attention\n\n{_items_text(items)}\n\n-- Okyaku (/api/v1/ai/anomalies)\n",
    )


def mailbox_email(to: str, severity: str, title: str, body: str) -> Email:
    """A connected mailbox stopped syncing (okyaku.mailboxes): said once per new error."""
    items = [(severity, title, body)]
    return Email(
        to=to,
        subject=f"[Okyaku] {title}"[:200],
        html=_HTML_PAGE.substitute(
            heading="Your mailbox needs your attention",
            content=_items_html(items),
            footer="sent once per new error; see /console/mailboxes",
        ),
        text=f"Your mailbox needs your attention\n\n{_items_text(items)}\n\n-- Okyaku (/console/mailboxes)\n",
    )


@dataclass
class SummaryContent:
    week: str
    narrative: str
    highlights: list[tuple[str, str, str]] = field(default_factory=list)  # your anomalies of the week


def weekly_summary_email(to: str, content: SummaryContent) -> Email:
    paragraphs = "".join(f"<p>{html.escape(p)}</p>" for p in content.narrative.split("\n") if p.strip())
    anomalies_html = (
        f"<h3>Your anomalies this week ({len(content.highlights)})</h3>{_items_html(content.highlights)}"
        if content.highlights
        else "<p>No new anomalies for you this week.</p>"
    )
    anomalies_text = (
        f"Your anomalies this week ({len(content.highlights)}):\n{_items_text(content.highlights)}"
        if content.highlights
        else "No new anomalies for you this week."
    )
    return Email(
        to=to,
        subject=f"[Okyaku] Weekly summary, week of {content.week}",
        html=_HTML_PAGE.substitute(
            heading=f"Week of {html.escape(content.week)}",
            content=paragraphs + anomalies_html,
            footer="weekly summary; see /api/v1/ai/insights",
        ),
        text=f"Week of {content.week}\n\n{content.narrative}\n\n{anomalies_text}\n\n-- Okyaku (/api/v1/ai/insights)\n",
    )


# --- delivery ----------------------------------------------------------------------------------


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "failed": self.failed, "skipped": self.skipped}


def _backoff(attempts: int) -> timedelta:
    return min(timedelta(minutes=2 ** min(attempts, 12)), MAX_BACKOFF)


def deliver_next(session: Session, mailer: Mailer | None, now: datetime, report: DeliveryReport) -> bool:
    """Claim and send the next due ``pending`` notification of the session's organization (one
    per transaction, so a crash later in the run cannot send it again); False when none is due.

    A weekly summary notification carries the user's ``digest`` notifications; they are marked
    sent with it. Without a mailer (no sender configured) rows are marked ``skipped``."""
    row = session.execute(
        text(
            """
            SELECT n.id, n.kind, n.user_id, n.severity, n.title, n.body, n.email_attempts,
                   u.email, i.week_start, i.narrative
            FROM notifications n JOIN users u ON u.id = n.user_id
            LEFT JOIN ai_insights i ON i.id = n.insight_id
            WHERE n.email_status = 'pending' AND n.email_next_attempt_at <= :now
            ORDER BY n.created_at
            LIMIT 1
            FOR UPDATE OF n SKIP LOCKED
            """
        ),
        {"now": now},
    ).first()
    if row is None:
        return False
    digest_ids: list[uuid.UUID] = []
    if mailer is None or not row.email:
        session.execute(
            text("UPDATE notifications SET email_status = 'skipped', email_last_error = :why WHERE id = :id"),
            {"id": row.id, "why": "no sender configured" if mailer is None else "the user has no e-mail address"},
        )
        report.skipped += 1
        return True
    if row.kind == "weekly_summary":
        digest = session.execute(
            text(
                "SELECT id, severity, title, body FROM notifications WHERE user_id = :user AND "
                "email_status = 'digest' AND created_at <= :now ORDER BY created_at FOR UPDATE SKIP LOCKED"
            ),
            {"user": row.user_id, "now": now},
        ).all()
        digest_ids = [d.id for d in digest]
        content = SummaryContent(
            week=str(row.week_start),
            narrative=row.narrative or row.body,
            highlights=[(d.severity, d.title, d.body) for d in digest],
        )
        email = weekly_summary_email(row.email, content)
    elif row.kind == "mailbox":
        email = mailbox_email(row.email, row.severity, row.title, row.body)
    else:
        email = anomaly_email(row.email, row.severity, row.title, row.body)
    try:
        message_id = mailer.send(email)
    except Exception as error:  # provider down or refusing: retried later, never dropped
        attempts = row.email_attempts + 1
        session.execute(
            text(
                "UPDATE notifications SET email_attempts = :attempts, email_last_error = :error, "
                "email_next_attempt_at = :next WHERE id = :id"
            ),
            {"id": row.id, "attempts": attempts, "error": str(error)[:1000], "next": now + _backoff(attempts)},
        )
        report.failed += 1
        report.errors.append(str(error)[:200])
        logger.warning("e-mail for notification %s failed (attempt %d): %s", row.id, attempts, error)
        return True
    session.execute(
        text(
            "UPDATE notifications SET email_status = 'sent', email_sent_at = :now, email_message_id = :mid, "
            "email_attempts = email_attempts + 1, email_last_error = NULL WHERE id = ANY(:ids)"
        ),
        {"now": now, "mid": message_id, "ids": [row.id, *digest_ids]},
    )
    report.sent += 1
    return True
