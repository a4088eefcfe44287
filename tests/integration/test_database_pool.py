"""Pooled connections: one idle for a while is pinged before use and replaced if its server
went away; one in steady use is not pinged (a round trip per transaction saved), and if it is
lost anyway its transaction fails once with a clear error (503 dependency_unavailable) and the next one reconnects."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event, text

from okyaku.db import Database
from okyaku.errors import DependencyUnavailable


def _backend_pid(database: Database) -> int:
    with database.session() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(owner_db: Database, pid: int) -> None:
    with owner_db.session() as session:
        assert session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    time.sleep(0.2)  # the backend exits asynchronously


def _count_statements(database: Database) -> list[str]:
    statements: list[str] = []
    event.listen(database.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


def test_a_connection_idle_past_the_limit_is_pinged_and_replaced_when_gone(pg, owner_db):
    database = Database(pg.app_url, pool_size=1, ping_after_idle_s=0.1)
    try:
        first = _backend_pid(database)
        _terminate(owner_db, first)
        time.sleep(0.15)
        assert _backend_pid(database) != first  # no error reached the caller: the ping found it
    finally:
        database.dispose()


def test_a_connection_in_steady_use_is_not_pinged(pg):
    database = Database(pg.app_url, pool_size=1, ping_after_idle_s=60)
    try:
        _backend_pid(database)
        dbapi_pings = []
        original = database.engine.dialect.do_ping
        database.engine.dialect.do_ping = lambda conn: dbapi_pings.append(conn) or original(conn)  # type: ignore[method-assign]
        for _ in range(5):
            _backend_pid(database)
        assert dbapi_pings == []
    finally:
        database.dispose()


def test_a_busy_connection_lost_fails_once_with_a_clear_error_then_reconnects(pg, owner_db):
    database = Database(pg.app_url, pool_size=1, ping_after_idle_s=60)
    try:
        first = _backend_pid(database)
        _terminate(owner_db, first)
        with pytest.raises(DependencyUnavailable) as raised:
            _backend_pid(database)
        assert raised.value.code == "dependency_unavailable" and raised.value.message == "the database is unavailable"
        assert "host" not in raised.value.message and "port" not in raised.value.message
        assert _backend_pid(database) != first
    finally:
        database.dispose()
