"""A real SMTP server for the tests (aiosmtpd, on a loopback port): okyaku's own local catcher,
with a way to make it refuse recipients (a 4xx or 5xx reply) or be down (stopped)."""

from __future__ import annotations

from typing import Any

from okyaku.email.catcher import CatchingHandler, SmtpCatcher


class RefusingHandler(CatchingHandler):
    """Keeps what it accepts; answers RCPT TO for an address in ``refuse`` with that reply."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: dict[str, str] = {}
        self.quit_reply: str | None = None  # e.g. "421 ...": a server that ends badly after taking the message

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        reply = self.refuse.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        return self.quit_reply or "221 Bye"


class TestSmtpServer(SmtpCatcher):
    __test__ = False  # not a test class

    def __init__(self) -> None:
        super().__init__(handler=RefusingHandler())
        self.handler: RefusingHandler

    def to(self, address: str) -> list[Any]:
        """The parsed messages delivered to ``address``."""
        return [m.message for m in self.messages if address in m.rcpt_tos]
