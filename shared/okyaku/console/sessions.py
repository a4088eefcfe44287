"""Console sessions: a signed cookie (HMAC-SHA256) and a CSRF token bound to it.

The cookie holds who signed in (organization, user, API key id), when, and a random nonce; its
signature is checked on every request and it expires after ``CONSOLE_SESSION_TTL_HOURS``. A
visitor who has not signed in gets an anonymous session (a nonce only) so that the sign-in form
carries a CSRF token too. Signing in always starts a new nonce (no session fixation). The CSRF
token is an HMAC of the nonce: a page of another site cannot read it, so it cannot forge a form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

logger = logging.getLogger(__name__)

COOKIE_NAME = "okyaku_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class ConsoleSession:
    nonce: str
    issued_at: float
    organization_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    user_label: str = ""
    organization_name: str = ""

    @property
    def signed_in(self) -> bool:
        return self.organization_id is not None

    def payload(self) -> dict[str, Any]:
        return {
            "n": self.nonce,
            "t": self.issued_at,
            "o": str(self.organization_id) if self.organization_id else None,
            "u": str(self.user_id) if self.user_id else None,
            "k": str(self.api_key_id) if self.api_key_id else None,
            "l": self.user_label,
            "on": self.organization_name,
        }

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> ConsoleSession:
        def as_uuid(value: Any) -> uuid.UUID | None:
            return uuid.UUID(str(value)) if value else None

        return cls(
            nonce=str(data["n"]),
            issued_at=float(data["t"]),
            organization_id=as_uuid(data.get("o")),
            user_id=as_uuid(data.get("u")),
            api_key_id=as_uuid(data.get("k")),
            user_label=str(data.get("l") or ""),
            organization_name=str(data.get("on") or ""),
        )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Signs and checks session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: str, *, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a session secret is required")
        self._key = hashlib.sha256(("okyaku-console:" + secret).encode()).digest()
        self.ttl_s = ttl_s
        self.clock = clock

    @classmethod
    def from_secret_setting(cls, secret: str, *, ttl_s: float) -> SessionSigner:
        """CONSOLE_SESSION_SECRET, or (unset) a random secret for this process: sessions then end
        with the process. (The local runner sets one for all its HTTP processes.)"""
        if not secret:
            logger.warning("CONSOLE_SESSION_SECRET is not set: console sessions are signed with a per-process secret")
            secret = secrets.token_urlsafe(32)
        return cls(secret, ttl_s=ttl_s)

    def _mac(self, purpose: str, message: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\x00" + message, hashlib.sha256).digest()

    def new_anonymous(self) -> ConsoleSession:
        return ConsoleSession(nonce=secrets.token_urlsafe(18), issued_at=self.clock())

    def signed_in(
        self,
        *,
        organization_id: uuid.UUID,
        user_id: uuid.UUID | None,
        api_key_id: uuid.UUID,
        user_label: str,
        organization_name: str,
    ) -> ConsoleSession:
        return replace(
            self.new_anonymous(),
            organization_id=organization_id,
            user_id=user_id,
            api_key_id=api_key_id,
            user_label=user_label,
            organization_name=organization_name,
        )

    def dumps(self, session: ConsoleSession) -> str:
        body = json.dumps(session.payload(), separators=(",", ":"), sort_keys=True).encode()
        return _b64(body) + "." + _b64(self._mac("session", body))

    def loads(self, cookie: str | None) -> ConsoleSession | None:
        """The session in ``cookie``, or None when it is missing, forged, malformed or expired."""
        if not cookie or "." not in cookie or len(cookie) > 4096:
            return None
        body_text, _, mac_text = cookie.partition(".")
        try:
            body = _unb64(body_text)
            mac = _unb64(mac_text)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            session = ConsoleSession.from_payload(json.loads(body))
        except (ValueError, KeyError, TypeError):
            return None
        age = self.clock() - session.issued_at
        if age < -60 or age > self.ttl_s:
            return None
        return session

    def sign_ticket(self, session: ConsoleSession, payload: dict[str, Any], *, ttl_s: float = 120.0) -> str:
        """A short-lived signed value bound to this session (e.g. a chat question for its stream URL)."""
        body = json.dumps({"p": payload, "n": session.nonce, "e": self.clock() + ttl_s}, separators=(",", ":")).encode()
        return _b64(body) + "." + _b64(self._mac("ticket", body))

    def open_ticket(self, session: ConsoleSession, ticket: str | None) -> dict[str, Any] | None:
        """The payload of a ticket this session signed that has not expired, else None."""
        if not ticket or "." not in ticket or len(ticket) > 8192:
            return None
        body_text, _, mac_text = ticket.partition(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
            if not hmac.compare_digest(mac, self._mac("ticket", body)):
                return None
            data = json.loads(body)
        except (ValueError, TypeError):
            return None
        if data.get("n") != session.nonce or float(data.get("e", 0)) < self.clock():
            return None
        payload = data.get("p")
        return payload if isinstance(payload, dict) else None

    def csrf_token(self, session: ConsoleSession) -> str:
        return _b64(self._mac("csrf", session.nonce.encode()))

    def csrf_valid(self, session: ConsoleSession, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(str(token), self.csrf_token(session))
