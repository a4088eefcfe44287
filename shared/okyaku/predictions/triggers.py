"""The non-HTTP triggers of the scoring and forecasting functions, and the one Lambda handler
that tells the three event shapes apart (API Gateway HTTP API v2, SQS batch, scheduled rule)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from fastapi import FastAPI

from okyaku.events import decode_change_event
from okyaku.predictions.service import ModelTarget, PredictionService

logger = logging.getLogger(__name__)

EventKind = Literal["sqs", "schedule", "http"]
LambdaHandler = Callable[[dict[str, Any], Any], Any]


def event_kind(event: Mapping[str, Any]) -> EventKind:
    records = event.get("Records")
    if isinstance(records, list) and records and records[0].get("eventSource") == "aws:sqs":
        return "sqs"
    if event.get("detail-type") == "Scheduled Event" or event.get("source") == "aws.events" or "job" in event:
        return "schedule"
    return "http"


def handle_change_batch(
    service: PredictionService, event: Mapping[str, Any], targets: Sequence[ModelTarget]
) -> dict[str, list[dict[str, str]]]:
    """Rescore per record; a record that fails is reported for redelivery (and, after the queue's
    maxReceiveCount, lands in its DLQ). Records that cannot be parsed fail too: they are kept
    for inspection rather than dropped."""
    failures: list[dict[str, str]] = []
    enabled = service.runtime.settings.ai_predictions_enabled
    for record in event.get("Records", []):
        message_id = str(record.get("messageId", ""))
        try:
            change = decode_change_event(record["body"])
            if not enabled:
                continue
            outcome = service.on_change(change, targets)
            # Every CRM write lands here: per-event detail is debug-level, failures are logged below.
            logger.debug("change %s (%s %s): %s", change.event_id, change.entity_type, change.operation, outcome)
        except Exception:
            logger.exception("rescoring failed for message %s", message_id)
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


def handle_schedule(service: PredictionService, targets: Sequence[ModelTarget]) -> dict[str, Any]:
    if not service.runtime.settings.ai_predictions_enabled:
        return {"skipped": "AI_PREDICTIONS_ENABLED=false"}
    report = service.nightly(targets)
    logger.info("nightly retrain and rescore: %s", report.as_dict())
    return report.as_dict()


def make_handler(app: FastAPI, targets: Sequence[ModelTarget]) -> LambdaHandler:
    """One handler for the function's HTTP routes, its change-event queue and its schedule."""
    from mangum import Mangum

    http = Mangum(app, lifespan="off")
    service: PredictionService = app.state.predictions

    def handler(event: dict[str, Any], context: Any) -> Any:
        kind = event_kind(event)
        if kind == "sqs":
            return handle_change_batch(service, event, targets)
        if kind == "schedule":
            return handle_schedule(service, targets)
        return http(event, context)

    return handler
