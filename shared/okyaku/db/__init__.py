"""Database access: one engine per process, one transaction per unit of work,
the organization set inside every transaction so that row-level security applies."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.orm import Session, sessionmaker

from okyaku.errors import Conflict, DependencyUnavailable, ValidationFailed

logger = logging.getLogger(__name__)

# Why a role would see past row-level security: any of these and isolation silently disappears.
_ROLE_CHECK_SQL = """
SELECT r.rolsuper AS superuser,
       r.rolbypassrls AS bypass_rls,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
           AND pg_has_role(current_user, c.relowner, 'USAGE')) AS owned_tables
FROM pg_roles r WHERE r.rolname = current_user
"""


# A pooled connection idle for longer than this is pinged before use (a restarted or
# failed-over server, an idle timeout on the way); one in steady use is not, since the ping is
# a round trip per transaction. If a busy connection is lost anyway, its transaction fails once
# (503 ``dependency_unavailable``) and SQLAlchemy invalidates the pool, so the next one reconnects.
PING_AFTER_IDLE_S = 10.0


def _ping_connections_after_idle(engine: Engine, idle_s: float) -> None:
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get("checked_in_at")
        if checked_in_at is None or time.monotonic() - checked_in_at < idle_s:
            return  # just connected, or used a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise exc.DisconnectionError("the pooled connection is gone")  # the pool reconnects


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` URLs (as pgserver and most tools print them) and use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


class Database:
    """Wraps an engine; ``organization_scope`` yields a session bound to one organization."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 5,
        statement_timeout_ms: int = 30_000,
        ping_after_idle_s: float = PING_AFTER_IDLE_S,
    ) -> None:
        if not url:
            raise DependencyUnavailable("DATABASE_URL is not configured", code="database_not_configured")
        self.engine: Engine = create_engine(
            normalize_url(url),
            pool_size=pool_size,
            max_overflow=pool_size,
            connect_args={"options": f"-c statement_timeout={statement_timeout_ms}"},
        )
        _ping_connections_after_idle(self.engine, ping_after_idle_s)
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False, autoflush=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction with no organization set: RLS hides every tenant row."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except exc.OperationalError as error:
            # The driver's text names hosts, ports and users: it goes to the log, not to the client.
            logger.warning("database unavailable: %s", error.orig)
            raise DependencyUnavailable("the database is unavailable") from error
        except exc.DataError as error:
            # A value Postgres cannot read (e.g. a tampered cursor): the caller's input, not a crash.
            diag = getattr(error.orig, "diag", None)
            raise ValidationFailed(
                "a value in the request could not be read",
                details=getattr(diag, "message_primary", None),
                code="invalid_value",
            ) from error
        except exc.IntegrityError as error:
            constraint = getattr(getattr(error.orig, "diag", None), "constraint_name", None)
            raise Conflict(
                "the change conflicts with an existing record",
                details={"constraint": constraint},
                code="integrity_conflict",
            ) from error

    @contextmanager
    def organization_scope(self, organization_id: uuid.UUID) -> Iterator[Session]:
        """One transaction in which RLS shows only ``organization_id``'s rows."""
        with self.session() as session:
            set_organization(session, organization_id)
            yield session

    def check_application_role(self) -> None:
        """Refuse to serve as a role that row-level security does not bind (a clear 503, at start)."""
        with self.session() as session:
            row = session.execute(text(_ROLE_CHECK_SQL)).one()
        reasons = [
            reason
            for reason, present in (
                ("is a superuser", row.superuser),
                ("has BYPASSRLS", row.bypass_rls),
                (f"owns {row.owned_tables} tables", row.owned_tables),
            )
            if present
        ]
        if reasons:
            raise DependencyUnavailable(
                "refusing to serve: the database role "
                + " and ".join(reasons)
                + ", so row-level security would not isolate organizations; connect DATABASE_URL as the "
                "application role (e.g. okyaku_app), not the owner",
                code="database_role_unsafe",
                details={"reasons": reasons},
            )

    def dispose(self) -> None:
        self.engine.dispose()


def set_organization(session: Session, organization_id: uuid.UUID) -> None:
    # is_local=true: the setting ends with the transaction, so a pooled connection never leaks it.
    session.execute(text("SELECT set_config('app.organization_id', :org, true)"), {"org": str(organization_id)})


def scalar(session: Session, sql: str, **params: Any) -> Any:
    return session.execute(text(sql), params).scalar()
