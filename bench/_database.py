"""The embedded Postgres a benchmark runs against, and the organization it measures in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from okyaku.db import Database
from okyaku.local.postgres import LocalDatabase, prepare_database, start_embedded_postgres
from okyaku.tenancy import NewOrganization, create_organization

ROOT = Path(__file__).resolve().parents[1]
BENCH_DATADIR = ROOT / ".okyaku" / "bench-pg"


@dataclass(frozen=True)
class BenchOrganization:
    local: LocalDatabase
    db: Database  # the application role, subject to RLS
    org: NewOrganization


@contextmanager
def bench_organization(name: str, admin_email: str, datadir: Path = BENCH_DATADIR) -> Iterator[BenchOrganization]:
    """A fresh organization in the bench database; afterwards it is deleted and the server stopped."""
    local = prepare_database(start_embedded_postgres(datadir))
    db = Database(local.app_url)
    org = create_organization(db, f"{name} {uuid.uuid4().hex[:6]}", admin_email)
    try:
        yield BenchOrganization(local=local, db=db, org=org)
    finally:
        db.dispose()
        owner = Database(local.owner_url)
        with owner.session() as session:  # the bench leaves no organization behind
            session.execute(text("DELETE FROM organizations WHERE id = :id"), {"id": org.organization_id})
        owner.dispose()
        _stop_server(datadir)


def _stop_server(datadir: Path) -> None:
    import pgserver

    server = pgserver.get_server(str(datadir))  # the cached handle: set its mode, then clean up
    server.cleanup_mode = "stop"
    server.cleanup()
