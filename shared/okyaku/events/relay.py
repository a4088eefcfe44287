"""The outbox relay: publishes change events that were not published at write time."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from okyaku.db import Database
from okyaku.db.models import OutboxEvent
from okyaku.events.outbox import backoff, to_change_event
from okyaku.events.publishers import EventPublisher, published_before_failure
from okyaku.tenancy import list_organization_ids

if TYPE_CHECKING:
    from okyaku.runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass
class RelayReport:
    published: int = 0
    failed: int = 0
    organizations: int = 0
    errors: list[str] = field(default_factory=list)


def relay_pending(db: Database, publisher: EventPublisher, *, batch_size: int = 500) -> RelayReport:
    """Publish every due pending event, organization by organization.

    Rows are locked (SKIP LOCKED) while they are published, so two relays never send the
    same row at once; a publisher failing part-way has the rows it did send marked (not sent
    again); a crash between send and commit re-sends them (at least once).
    """
    report = RelayReport()
    for organization_id in list_organization_ids(db):
        report.organizations += 1
        while True:
            with db.organization_scope(organization_id) as session:
                rows = list(
                    session.scalars(
                        select(OutboxEvent)
                        .where(
                            OutboxEvent.published_at.is_(None),
                            OutboxEvent.next_attempt_at <= datetime.now(UTC),
                        )
                        .order_by(OutboxEvent.id)
                        .limit(batch_size)
                        .with_for_update(skip_locked=True)
                    )
                )
                if not rows:
                    break
                try:
                    publisher.publish([to_change_event(row) for row in rows])
                except Exception as error:
                    # What went out before the failure is marked, so the next run does not send it again.
                    delivered = published_before_failure(error)
                    now = datetime.now(UTC)
                    failed = 0
                    for row in rows:
                        row.attempts += 1
                        if row.event_id in delivered:
                            row.published_at = now
                            continue
                        failed += 1
                        row.last_error = str(error)[:2000]
                        row.next_attempt_at = now + backoff(row.attempts)
                    report.published += len(rows) - failed
                    report.failed += failed
                    report.errors.append(f"{organization_id}: {error}")
                    logger.warning("relay could not publish %d of %d events: %s", failed, len(rows), error)
                    break
                now = datetime.now(UTC)
                for row in rows:
                    row.published_at = now
                    row.attempts += 1
                report.published += len(rows)
            if len(rows) < batch_size:
                break
    return report


def relay_scheduled(runtime: Runtime) -> dict[str, Any]:
    """The ``outbox_relay`` schedule: publish what is pending, or say why nothing can be."""
    publisher = runtime.publisher
    if publisher is None:
        # No queue configured: the events stay pending until one is.
        logger.warning("no change-event publisher configured (CHANGE_EVENTS_BUS_NAME or CHANGE_EVENTS_QUEUE_URL)")
        return {"published": 0, "failed": 0, "organizations": 0, "errors": [], "skipped": "no publisher"}
    report = relay_pending(runtime.db, publisher)
    if report.failed:
        logger.warning("relay: %d events could not be published: %s", report.failed, report.errors[:3])
    logger.info("relay: published %d events across %d organizations", report.published, report.organizations)
    return asdict(report)
