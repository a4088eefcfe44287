"""Embedded Postgres + pgvector (pgserver) for development and tests."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

from okyaku.db import normalize_url
from okyaku.db.migrate import upgrade


@dataclass(frozen=True)
class LocalDatabase:
    owner_url: str  # runs migrations; superuser in the embedded server
    app_url: str  # the application role: owns nothing, subject to RLS


def start_embedded_postgres(datadir: Path) -> str:
    """Start (initdb on first use) pgserver in ``datadir``; returns the owner's URL."""
    import pgserver  # only the embedded default needs it

    datadir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(  # type: ignore[attr-defined]
        str(datadir), cleanup_mode=None
    )
    return str(server.get_uri())


def app_role_url(owner_url: str, role: str) -> str:
    """The same server and database, connecting as ``role`` (trust auth on the local socket)."""
    parts = urllib.parse.urlsplit(owner_url)
    host = parts.netloc.split("@", 1)[-1]
    return urllib.parse.urlunsplit((parts.scheme, f"{role}@{host}", parts.path, parts.query, parts.fragment))


def prepare_database(owner_url: str, role: str = "okyaku_app") -> LocalDatabase:
    """Run migrations and let the app role log in."""
    upgrade(owner_url, app_role=role)
    engine = create_engine(normalize_url(owner_url))
    with engine.begin() as connection:
        connection.execute(text(f"ALTER ROLE {role} LOGIN"))
    engine.dispose()
    return LocalDatabase(owner_url=owner_url, app_url=app_role_url(owner_url, role))
