"""Writing change events in the writer's transaction, and publishing them after commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from okyaku.db import Database
from okyaku.db.models import OutboxEvent
from okyaku.events.model import ChangeEvent, Operation
from okyaku.events.publishers import EventPublisher, published_before_failure

logger = logging.getLogger(__name__)

_PENDING_KEY = "okyaku.pending_events"
MAX_BACKOFF = timedelta(minutes=30)
# A write with more events than this (a large import, a company deleted with thousands of
# contacts) leaves publishing to the scheduled relay instead of holding up its response.
PUBLISH_INLINE_LIMIT = 1000


def record_change(
    session: Session,
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    operation: Operation,
    version: int,
    changed_fields: Iterable[str] = (),
) -> ChangeEvent:
    """Add an outbox row in the current transaction: it commits or rolls back with the change."""
    row = OutboxEvent(
        event_id=uuid.uuid4(),
        entity_type=entity_type,
        entity_id=entity_id,
        operation=operation,
        changed_fields=sorted(changed_fields),
        entity_version=version,
        occurred_at=datetime.now(UTC),
    )
    session.add(row)
    session.flush()
    event = to_change_event(row)
    session.info.setdefault(_PENDING_KEY, []).append(event)
    return event


def record_changes(
    session: Session,
    *,
    entity_type: str,
    changes: Sequence[tuple[uuid.UUID, int]],
    operation: Operation,
    changed_fields: Iterable[str] = (),
) -> list[ChangeEvent]:
    """Outbox rows for many records of one type, ``(id, version)`` each, in one INSERT."""
    if not changes:
        return []
    occurred_at = datetime.now(UTC)
    fields = sorted(changed_fields)
    rows = session.scalars(
        insert(OutboxEvent).returning(OutboxEvent),
        [
            {
                "event_id": uuid.uuid4(),
                "entity_type": entity_type,
                "entity_id": entity_id,
                "operation": operation,
                "changed_fields": fields,
                "entity_version": version,
                "occurred_at": occurred_at,
            }
            for entity_id, version in changes
        ],
    ).all()
    events = [to_change_event(row) for row in rows]
    session.info.setdefault(_PENDING_KEY, []).extend(events)
    return events


def to_change_event(row: OutboxEvent) -> ChangeEvent:
    return ChangeEvent(
        event_id=row.event_id,
        organization_id=row.organization_id,
        entity_type=row.entity_type,
        entity_id=row.entity_id,
        operation=row.operation,
        changed_fields=list(row.changed_fields),
        version=row.entity_version,
        occurred_at=row.occurred_at,
    )


@contextmanager
def write_transaction(
    db: Database,
    organization_id: uuid.UUID,
    publisher: EventPublisher | None,
    *,
    publish_inline_limit: int | None = PUBLISH_INLINE_LIMIT,
) -> Iterator[Session]:
    """An organization-scoped transaction whose change events are published after commit.

    If publishing fails the rows stay pending and the relay publishes them later; so do they when
    there are more than ``publish_inline_limit`` (None: no limit, e.g. seeding demo data).
    """
    events: list[ChangeEvent] = []
    with db.organization_scope(organization_id) as session:
        yield session
        events = list(session.info.pop(_PENDING_KEY, []))
    if events and publisher is not None and (publish_inline_limit is None or len(events) <= publish_inline_limit):
        publish_events(db, organization_id, publisher, events)


def publish_events(
    db: Database, organization_id: uuid.UUID, publisher: EventPublisher, events: Sequence[ChangeEvent]
) -> int:
    """Publish committed events and mark them; returns how many were published."""
    try:
        publisher.publish(events)
    except Exception as error:  # any publisher failure leaves the events it did not send for the relay
        delivered = published_before_failure(error)
        failed = [e.event_id for e in events if e.event_id not in delivered]
        logger.warning("publishing %d change events failed; the relay will retry: %s", len(failed), error)
        _mark_published(db, organization_id, [e.event_id for e in events if e.event_id in delivered])
        _record_failure(db, organization_id, failed, str(error))
        return len(events) - len(failed)
    _mark_published(db, organization_id, [e.event_id for e in events])
    return len(events)


def _mark_published(db: Database, organization_id: uuid.UUID, event_ids: list[uuid.UUID]) -> None:
    if not event_ids:
        return
    try:
        with db.organization_scope(organization_id) as session:
            session.execute(
                update(OutboxEvent).where(OutboxEvent.event_id.in_(event_ids)).values(published_at=datetime.now(UTC))
            )
    except Exception:
        # The write is committed and the events are out; failing the request now would invite a
        # retry that duplicates the write. The relay re-sends them (at least once, by design).
        logger.exception("could not mark %d published change events; the relay will send them again", len(event_ids))


def _record_failure(db: Database, organization_id: uuid.UUID, event_ids: list[uuid.UUID], error: str) -> None:
    if not event_ids:
        return
    try:
        with db.organization_scope(organization_id) as session:
            for row in session.scalars(select(OutboxEvent).where(OutboxEvent.event_id.in_(event_ids))):
                row.attempts += 1
                row.last_error = error[:2000]
                row.next_attempt_at = datetime.now(UTC) + backoff(row.attempts)
    except Exception:  # the events are still pending; only the bookkeeping is lost
        logger.exception("could not record the publishing failure")


def backoff(attempts: int) -> timedelta:
    """Exponential: 10 s, 20 s, 40 s, ... capped at 30 minutes."""
    exponent = min(max(attempts - 1, 0), 16)  # 10 s * 2**16 is already far past the cap
    return min(timedelta(seconds=10 * 2**exponent), MAX_BACKOFF)
