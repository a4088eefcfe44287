"""The IMAP side of an incremental sync, over the standard library's ``imaplib``.

Per folder the sync asks for the UIDs above its cursor (``UID SEARCH UID n:* SINCE d``), their
sizes, then the messages themselves with ``BODY.PEEK[]`` (reading never marks them seen); a
message over the size limit is fetched as its header only. Errors are sorted into the two a user
can act on: the server refused the credentials (:class:`MailboxAuthFailed`), or it could not be
reached or broke off (:class:`MailboxUnreachable`).
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

TlsMode = Literal["ssl", "starttls", "none"]
LIST_LINE = re.compile(rb'^\((?P<flags>[^)]*)\)\s+(?P<sep>"(?:[^"\\]|\\.)*"|NIL)\s+(?P<name>.+)$')
FETCH_UID = re.compile(rb"UID (\d+)")
FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
# Common names of the sent folder, for servers that mark none \Sent (RFC 6154).
SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "[Gmail]/Sent Mail", "INBOX.Sent", "INBOX/Sent")
FETCH_CHUNK = 20


class ImapFailure(Exception):
    """A failure the mailbox's owner is shown (``kind`` says which)."""

    kind = "imap_error"


class MailboxAuthFailed(ImapFailure):
    kind = "auth_failed"


class MailboxUnreachable(ImapFailure):
    kind = "unreachable"


@dataclass(frozen=True)
class ImapAccount:
    host: str
    port: int
    tls_mode: TlsMode
    username: str
    password: str = field(repr=False)
    timeout_s: float = 20.0


@dataclass(frozen=True)
class FetchedMessage:
    uid: int
    raw: bytes
    headers_only: bool


def _text(error: BaseException) -> str:
    value = error.args[0] if error.args else error
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)[:300] or type(error).__name__


def quote_folder(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(name: bytes) -> str:
    text = name.decode("utf-8", "replace").strip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def parse_list(lines: Sequence[object]) -> dict[str, frozenset[str]]:
    """``LIST`` answers -> folder name -> its attributes (``\\Sent``, ``\\HasNoChildren``...)."""
    folders: dict[str, frozenset[str]] = {}
    for line in lines:
        if isinstance(line, tuple):  # a name sent as a literal: ( b'(flags) "/" {n}', b'name')
            head, literal = line[0], line[1]
            match = LIST_LINE.match(bytes(head).rstrip() + b' "x"')
            if match:
                folders[bytes(literal).decode("utf-8", "replace")] = _flags(match.group("flags"))
            continue
        if not isinstance(line, bytes):
            continue
        match = LIST_LINE.match(line)
        if match:
            folders[_unquote(match.group("name"))] = _flags(match.group("flags"))
    return folders


def _flags(raw: bytes) -> frozenset[str]:
    return frozenset(flag.lower() for flag in raw.decode("ascii", "replace").split())


class ImapConnection:
    """One logged-in IMAP session; use as a context manager (logs out, closes the socket)."""

    def __init__(self, account: ImapAccount) -> None:
        self.account = account
        self.client = self._open(account)

    @staticmethod
    def _open(account: ImapAccount) -> imaplib.IMAP4:
        context = ssl.create_default_context()
        client: imaplib.IMAP4 | None = None
        try:
            if account.tls_mode == "ssl":
                client = imaplib.IMAP4_SSL(account.host, account.port, ssl_context=context, timeout=account.timeout_s)
            else:
                client = imaplib.IMAP4(account.host, account.port, timeout=account.timeout_s)
                if account.tls_mode == "starttls":
                    client.starttls(context)
        except (OSError, imaplib.IMAP4.error) as error:
            if client is not None:
                _close_quietly(client)
            raise MailboxUnreachable(
                f"could not reach the IMAP server {account.host}:{account.port} ({account.tls_mode}): {_text(error)}"
            ) from error
        try:
            client.login(account.username, account.password)
        except imaplib.IMAP4.abort as error:
            _close_quietly(client)
            raise MailboxUnreachable(f"the IMAP server closed the connection at login: {_text(error)}") from error
        except imaplib.IMAP4.error as error:
            _close_quietly(client)
            raise MailboxAuthFailed(
                f"the IMAP server refused the username or password: {_text(error)} (Gmail and Microsoft 365 "
                "need an app password, not the account's own)"
            ) from error
        except OSError as error:
            _close_quietly(client)
            raise MailboxUnreachable(f"the connection to the IMAP server failed at login: {_text(error)}") from error
        return client

    def __enter__(self) -> ImapConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        try:
            self.client.logout()
        except (OSError, imaplib.IMAP4.error):
            _close_quietly(self.client)

    def _ok(self, what: str, result: tuple[str, Sequence[object]]) -> list[object]:
        status, data = result[0], list(result[1])
        if status != "OK":
            detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
            raise ImapFailure(f"{what} failed: {detail[:300]}")
        return data

    def call(self, what: str, command: str, *args: str) -> list[object]:
        """One UID command; a dropped connection or timeout is :class:`MailboxUnreachable`."""
        try:
            return self._ok(what, self.client.uid(command, *args))
        except imaplib.IMAP4.abort as error:
            raise MailboxUnreachable(f"the IMAP server broke off during {what}: {_text(error)}") from error
        except (TimeoutError, OSError) as error:
            raise MailboxUnreachable(f"the connection failed during {what}: {_text(error)}") from error
        except imaplib.IMAP4.error as error:
            raise ImapFailure(f"{what} failed: {_text(error)}") from error

    def resolve_folders(self, wanted: Sequence[str]) -> tuple[list[str], list[str]]:
        """The folders to sync and those that do not exist. An entry like ``\\Sent`` is the
        folder the server marks with that special use (else a common name for it)."""
        try:
            listed = parse_list(self._ok("LIST", self.client.list()))
        except imaplib.IMAP4.abort as error:
            raise MailboxUnreachable(f"the IMAP server broke off during LIST: {_text(error)}") from error
        except imaplib.IMAP4.error as error:
            raise ImapFailure(f"LIST failed: {_text(error)}") from error
        by_lower = {name.lower(): name for name in listed}
        found: list[str] = []
        missing: list[str] = []
        for entry in wanted:
            name: str | None
            if entry.startswith("\\"):
                marked = [n for n, flags in listed.items() if entry.lower() in flags]
                name = marked[0] if marked else None
                if name is None and entry.lower() == "\\sent":
                    name = next((by_lower[n.lower()] for n in SENT_NAMES if n.lower() in by_lower), None)
            else:
                name = by_lower.get(entry.lower()) if entry.upper() != "INBOX" else by_lower.get("inbox")
            if name is None:
                missing.append(entry)
            elif name not in found:
                found.append(name)
        return found, missing

    def select(self, folder: str) -> int:
        """Open ``folder`` read-only; its UIDVALIDITY."""
        try:
            self._ok(f"SELECT {folder}", self.client.select(quote_folder(folder), readonly=True))
            _name, values = self.client.response("UIDVALIDITY")
        except imaplib.IMAP4.abort as error:
            raise MailboxUnreachable(f"the IMAP server broke off during SELECT: {_text(error)}") from error
        except imaplib.IMAP4.error as error:
            raise ImapFailure(f"SELECT {folder} failed: {_text(error)}") from error
        value = values[0] if values else None
        if not isinstance(value, bytes) or not value.strip().isdigit():
            raise ImapFailure(f"the server sent no UIDVALIDITY for {folder}")
        return int(value)

    def new_uids(self, after_uid: int, since: date) -> list[int]:
        """UIDs above ``after_uid`` of messages received since ``since``, ascending."""
        data = self.call("UID SEARCH", "SEARCH", f"UID {after_uid + 1}:*", f"SINCE {since:%d-%b-%Y}")
        raw = b" ".join(d for d in data if isinstance(d, bytes))
        # "n:*" always includes the highest UID, even below n: keep only those above the cursor.
        return sorted(uid for uid in (int(t) for t in raw.split() if t.isdigit()) if uid > after_uid)

    def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        found: dict[int, int] = {}
        for start in range(0, len(uids), 200):
            chunk = ",".join(str(u) for u in uids[start : start + 200])
            for item in self.call("UID FETCH sizes", "FETCH", chunk, "(UID RFC822.SIZE)"):
                line = item[0] if isinstance(item, tuple) else item
                if isinstance(line, bytes):
                    uid, size = FETCH_UID.search(line), FETCH_SIZE.search(line)
                    if uid and size:
                        found[int(uid.group(1))] = int(size.group(1))
        return found

    def fetch(self, uids: Sequence[int], max_bytes: int) -> Iterator[FetchedMessage]:
        """The messages, in UID order; one over ``max_bytes`` as its header only. A UID that
        vanished since the search (expunged) is skipped."""
        sizes = self.sizes(uids)
        present = [uid for uid in uids if uid in sizes]
        for start in range(0, len(present), FETCH_CHUNK):
            chunk = present[start : start + FETCH_CHUNK]
            whole = [u for u in chunk if sizes[u] <= max_bytes]
            header_only = [u for u in chunk if sizes[u] > max_bytes]
            got: dict[int, FetchedMessage] = {}
            if whole:
                for uid, raw in self._bodies(whole, "BODY.PEEK[]"):
                    got[uid] = FetchedMessage(uid, raw, headers_only=False)
            if header_only:
                for uid, raw in self._bodies(header_only, "BODY.PEEK[HEADER]"):
                    got[uid] = FetchedMessage(uid, raw, headers_only=True)
            for uid in chunk:
                if uid in got:
                    yield got[uid]

    def _bodies(self, uids: Sequence[int], item: str) -> Iterator[tuple[int, bytes]]:
        data = self.call("UID FETCH", "FETCH", ",".join(str(u) for u in uids), f"(UID {item})")
        for index, entry in enumerate(data):
            if isinstance(entry, tuple) and len(entry) >= 2:
                match = FETCH_UID.search(bytes(entry[0]))
                after = data[index + 1] if index + 1 < len(data) else b""
                if match is None and isinstance(after, bytes):  # some servers put UID after the literal
                    match = FETCH_UID.search(after)
                if match:
                    yield int(match.group(1)), bytes(entry[1])


def _close_quietly(client: imaplib.IMAP4) -> None:
    with contextlib.suppress(OSError, imaplib.IMAP4.error, AttributeError):
        client.shutdown()


def open_imap(account: ImapAccount) -> ImapConnection:
    return ImapConnection(account)
