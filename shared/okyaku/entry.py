"""The one entry shape of every function.

A function module (``functions/<name>/app.py``) builds its services once per cold start and
hands them to :func:`function_handler`, which returns the Lambda handler::

    with built_once():
        service = SomeService(Runtime())
        app = create_some_app(service)
        handler = function_handler(name="some", http=app, on_record=service.on_change_record)

:func:`classify_event` tells the three trigger shapes apart (API Gateway HTTP API v2, an SQS
batch, an EventBridge schedule) and refuses anything else with :class:`UnsupportedEvent`.
Queue batches always go through Powertools' partial-batch processing, so a failed record is
reported in ``batchItemFailures`` (retried, then dead-lettered) and the others are settled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from okyaku.clock import invocation
from okyaku.errors import BadRequest
from okyaku.logs import configure_logging, correlation_id
from okyaku.queue import BatchPreparer, RecordHandler, consume_batch

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger(__name__)

EventKind = Literal["http", "sqs", "schedule"]
LambdaHandler = Callable[[dict[str, Any], Any], Any]
ScheduleHandler = Callable[[Mapping[str, Any], Any], Mapping[str, Any]]


class UnsupportedEvent(BadRequest):
    """The function was invoked with an event it has no trigger for."""

    code = "unsupported_event"


def classify_event(event: object) -> EventKind:
    """Which trigger sent ``event``; :class:`UnsupportedEvent` for any other shape.

    - ``http``: API Gateway HTTP API payload 2.0 (``version`` "2.0" with ``requestContext.http``);
    - ``sqs``: ``Records`` that all come from ``aws:sqs``;
    - ``schedule``: EventBridge's scheduled event (``source`` ``aws.events``), or a rule's constant
      ``Input`` naming its job (``{"job": "..."}``, nothing that looks like another trigger).
    """
    if not isinstance(event, Mapping):
        raise UnsupportedEvent(f"an event must be a JSON object, not {type(event).__name__}")
    context = event.get("requestContext")
    if event.get("version") == "2.0" and isinstance(context, Mapping) and isinstance(context.get("http"), Mapping):
        return "http"
    records = event.get("Records")
    if records is not None:
        if isinstance(records, list) and records and all(_is_sqs_record(r) for r in records):
            return "sqs"
        sources = sorted({str(r.get("eventSource")) for r in records if isinstance(r, Mapping)}) or ["none"]
        raise UnsupportedEvent(
            "only SQS batches are consumed; got records from " + ", ".join(sources),
            details={"event_sources": sources},
        )
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return "schedule"
    if isinstance(event.get("job"), str) and "httpMethod" not in event and "requestContext" not in event:
        return "schedule"
    raise UnsupportedEvent(
        "not an API Gateway HTTP API v2, SQS or EventBridge schedule event",
        details={"keys": sorted(str(k) for k in event)[:20]},
    )


def _is_sqs_record(record: object) -> bool:
    return isinstance(record, Mapping) and record.get("eventSource") == "aws:sqs"


def function_handler(
    *,
    name: str,
    http: FastAPI | None = None,
    on_record: RecordHandler | None = None,
    on_batch: BatchPreparer | None = None,
    on_schedule: ScheduleHandler | None = None,
) -> LambdaHandler:
    """The Lambda handler for a function with any of the three triggers.

    ``on_record`` handles one queue record (raise to have it retried); ``on_batch`` is the
    alternative for consumers that prepare the whole batch first. ``on_schedule`` gets the
    scheduled event and returns a JSON-able report.
    """
    if on_record is not None and on_batch is not None:
        raise ValueError("give on_record or on_batch, not both")
    configure_logging()
    http_handler = _http_handler(http) if http is not None else None
    function_logger = logging.getLogger(f"okyaku.functions.{name}")

    def handler(event: dict[str, Any], context: Any) -> Any:
        kind = classify_event(event)
        with correlation_id(_correlation_id(kind, event, context)), invocation(context):
            if kind == "http" and http_handler is not None:
                return http_handler(event, context)
            if kind == "sqs" and (on_record is not None or on_batch is not None):
                return consume_batch(event, context, on_record=on_record, on_batch=on_batch, log=function_logger)
            if kind == "schedule" and on_schedule is not None:
                report = dict(on_schedule(event, context))
                function_logger.info("scheduled run done", extra={"report": report})
                return report
        raise UnsupportedEvent(f"the {name} function has no {kind} trigger", details={"kind": kind})

    return handler


def _http_handler(app: FastAPI) -> LambdaHandler:
    from mangum import Mangum

    mangum = Mangum(app, lifespan="off")

    def http_handler(event: dict[str, Any], context: Any) -> Any:
        return mangum(event, context)

    return http_handler


def _correlation_id(kind: EventKind, event: Mapping[str, Any], context: Any) -> str:
    if kind == "http":
        request_id = event.get("requestContext", {}).get("requestId")
        if request_id:
            return str(request_id)
    if kind == "schedule" and event.get("id"):
        return str(event["id"])
    return str(getattr(context, "aws_request_id", "") or "")
