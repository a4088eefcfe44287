"""Per-process wiring, created once per cold start and shared by a function's requests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import ClassVar

from sqlalchemy.orm import Session

from okyaku.config import Settings, get_settings
from okyaku.db import Database
from okyaku.events.outbox import write_transaction
from okyaku.events.publishers import EventPublisher, publisher_from_settings


class Runtime:
    """Holds the database and the event publisher; both are created on first use.

    The publisher is the one given, else the host's (below), else the one the settings configure
    (EventBridge, SQS, or none: events wait in the outbox for the relay)."""

    # A host that runs functions in its own process (the local runner) sets this, so the
    # runtimes those functions build deliver to it; a deployed function never has one.
    hosted_publisher: ClassVar[EventPublisher | None] = None

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        db: Database | None = None,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.settings = settings or get_settings()
        self._db = db
        self._publisher = publisher

    @cached_property
    def db(self) -> Database:
        if self._db is not None:
            return self._db
        db = Database(
            self.settings.database_url,
            pool_size=self.settings.database_pool_size,
            statement_timeout_ms=self.settings.database_statement_timeout_ms,
        )
        # Once per process: a role that row-level security does not bind must never serve.
        try:
            db.check_application_role()
        except Exception:
            db.dispose()
            raise
        return db

    @cached_property
    def publisher(self) -> EventPublisher | None:
        return self._publisher or Runtime.hosted_publisher or publisher_from_settings(self.settings)

    @contextmanager
    def transaction(self, organization_id: uuid.UUID) -> Iterator[Session]:
        """One organization-scoped transaction; its change events are published after commit."""
        with write_transaction(self.db, organization_id, self.publisher) as session:
            yield session
