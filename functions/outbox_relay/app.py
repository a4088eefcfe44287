"""outbox_relay: on its schedule, publishes change events left pending in the outbox."""

import logging
from dataclasses import asdict
from typing import Any

from okyaku.events.relay import relay_pending
from okyaku.runtime import Runtime

logger = logging.getLogger("okyaku.functions.outbox_relay")
runtime = Runtime()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
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
