"""``okyaku dev``'s local SMTP catcher (aiosmtpd): accepts every message on a loopback port and
keeps it (in memory, and as ``.eml`` files when given a folder), delivering nothing to anyone.

The console's Outbox page lists the e-mails from the outbox table, whatever server took them;
the catcher is what makes "sent" safe locally."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaughtMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class CatchingHandler:
    """aiosmtpd's handler: every message accepted and kept."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self.messages: list[CaughtMessage] = []
        self._lock = threading.Lock()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        caught = CaughtMessage(str(envelope.mail_from), tuple(envelope.rcpt_tos), bytes(raw))
        with self._lock:
            self.messages.append(caught)
        if self.folder is not None:
            (self.folder / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml").write_bytes(caught.raw)
        logger.info("caught an e-mail to %s (not delivered)", ", ".join(caught.rcpt_tos))
        return "250 Message accepted (caught locally, not delivered)"


class SmtpCatcher:
    """``start()`` listens on ``host:port`` (0: any free port); ``stop()`` ends it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, folder: Path | None = None, handler: Any = None):
        self.host = host
        self.requested_port = port
        self.handler = handler or CatchingHandler(folder)
        self._controller: Any = None
        self._port = 0

    @property
    def port(self) -> int:
        return self._port or self.requested_port

    @property
    def messages(self) -> list[CaughtMessage]:
        return list(self.handler.messages)

    def start(self) -> SmtpCatcher:
        from aiosmtpd.controller import Controller

        self._port = self.requested_port or _free_port(self.host)
        self._controller = Controller(self.handler, hostname=self.host, port=self._port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def _free_port(host: str) -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
