"""How a message leaves: SMTP (smtplib) or SES (boto3 through ``okyaku.aws``).

A transport either returns the provider's id for the message or raises one of two errors, which
decide what the outbox does next:

- :class:`TransientFailure`: the server is down or unreachable, a timeout, a 4xx, refused
  credentials (a configuration the operator can fix): the e-mail is retried with backoff.
- :class:`PermanentFailure`: the server refused *this message* for good (an SMTP 5xx, SES's
  ``MessageRejected``): the e-mail is ``failed`` with the reason, never retried.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from okyaku.config import Settings

logger = logging.getLogger(__name__)


class DeliveryFailure(Exception):
    """A send that did not go through; ``reason`` is what the user is shown."""

    permanent = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:1000]


class TransientFailure(DeliveryFailure):
    permanent = False


class PermanentFailure(DeliveryFailure):
    permanent = True


class Transport(Protocol):
    name: str

    def send(self, message: EmailMessage) -> str:
        """Send; return the provider's id for it, or raise a :class:`DeliveryFailure`."""
        ...


def _smtp_reason(code: int, text: bytes | str) -> str:
    detail = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"SMTP {code}: {detail}".strip()


def _hang_up(smtp: smtplib.SMTP) -> None:
    """QUIT, ignoring how it goes: once the server took the message (250 after DATA) it is sent,
    and an error on QUIT (``with smtplib.SMTP`` raises one for any reply but 221) must not have it
    retried (a second copy) or failed (it left)."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError) as error:
        logger.info("SMTP QUIT ended badly (%s); the message's outcome stands", error)
    finally:
        smtp.close()


@dataclass
class SmtpTransport:
    host: str
    port: int = 587
    username: str = ""
    password: str = field(default="", repr=False)
    starttls: bool = True
    timeout_s: float = 30.0
    name: str = "smtp"

    def send(self, message: EmailMessage) -> str:
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            try:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(message)
            finally:
                _hang_up(smtp)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _text in error.recipients.values()]
            reason = "; ".join(f"{to}: {_smtp_reason(c, t)}" for to, (c, t) in error.recipients.items())
            raise (PermanentFailure if all(c >= 500 for c in codes) else TransientFailure)(reason) from error
        except smtplib.SMTPAuthenticationError as error:
            # The account's settings, not the message: retried once the operator fixes them.
            raise TransientFailure(_smtp_reason(error.smtp_code, error.smtp_error)) from error
        except smtplib.SMTPResponseException as error:  # sender refused, data refused, 4xx/5xx replies
            reason = _smtp_reason(error.smtp_code, error.smtp_error)
            raise (PermanentFailure if error.smtp_code >= 500 else TransientFailure)(reason) from error
        except (smtplib.SMTPException, OSError) as error:  # refused connection, timeout, dropped line, TLS
            raise TransientFailure(f"SMTP server {self.host}:{self.port} unavailable: {error}") from error
        return str(message["Message-ID"])


# SES error codes that refuse the message itself; anything else (throttling, credentials, a region
# or endpoint that does not answer) is worth another try.
SES_PERMANENT = frozenset({"MessageRejected", "InvalidParameterValue"})


class SesTransport:
    """``SendRawEmail``, so the message keeps its own headers (In-Reply-To, References). SES puts
    its own Message-ID on what it delivers; its id is kept as the e-mail's ``provider_message_id``."""

    name = "ses"

    def __init__(self, *, endpoint_url: str = "", region: str = "us-east-1", client: Any = None) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._client = client

    def send(self, message: EmailMessage) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._client is None:
            from okyaku.aws import boto3_client

            self._client = boto3_client("ses", endpoint_url=self.endpoint_url, region=self.region)
        try:
            response = self._client.send_raw_email(
                Source=str(message["From"]),
                Destinations=[str(message["To"])],
                RawMessage={"Data": message.as_bytes()},
            )
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            text = str(error.response.get("Error", {}).get("Message", "")) or str(error)
            reason = f"SES {code}: {text}"
            raise (PermanentFailure if code in SES_PERMANENT else TransientFailure)(reason) from error
        except BotoCoreError as error:
            raise TransientFailure(f"SES unavailable: {error}") from error
        return str(response["MessageId"])


def transport_from_settings(settings: Settings) -> Transport:
    """SMTP when ``SMTP_HOST`` is set (or ``EMAIL_TRANSPORT=smtp``), else SES."""
    kind = settings.email_transport
    if kind == "smtp" or (kind == "auto" and settings.smtp_host):
        return SmtpTransport(
            host=settings.smtp_host or "localhost",
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value(),
            starttls=settings.smtp_starttls,
            timeout_s=settings.smtp_timeout_s,
        )
    return SesTransport(endpoint_url=settings.aws_endpoint_url, region=settings.aws_region)


# --- notifications rendered elsewhere (the anomalies' HTML and text) -------------------------------


class RenderedEmail(Protocol):
    @property
    def to(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...


class TransportMailer:
    """A mailer for already-rendered notifications (the anomalies' ``Email``) over a transport: the
    same server as every other e-mail, HTML with a text alternative, a Message-ID of its own."""

    def __init__(self, sender: str, transport: Transport) -> None:
        self.sender = sender
        self.transport = transport

    def send(self, email: RenderedEmail) -> str:
        from email.utils import formatdate

        from okyaku.email.messages import new_message_id

        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = email.to
        # One header line: a record's name in an anomaly's title may hold a line break.
        message["Subject"] = " ".join(email.subject.split())
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = new_message_id(self.sender)
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
        return self.transport.send(message)
