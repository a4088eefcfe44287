"""The one entry shape: which trigger an event came from, and how each is handled."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from okyaku.entry import UnsupportedEvent, classify_event, function_handler
from okyaku.logs import JsonFormatter, correlation_id
from okyaku.queue import consume_batch

EVENTS = Path(__file__).resolve().parents[2] / "events"


def sqs_record(message_id: str, body: str = "{}") -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": "r",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:q",
        "awsRegion": "us-east-1",
    }


SCHEDULED = {"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*/*.json")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_sample_event_is_classified(path: Path) -> None:
    event = json.loads(path.read_text())
    kind = classify_event(event)
    name = path.stem
    if name.startswith(("http", "get", "post", "delete", "patch", "put")) or "requestContext" in event:
        assert kind == "http"
    elif "Records" in event:
        assert kind == "sqs"
    else:
        assert kind == "schedule"


def test_shapes() -> None:
    assert classify_event({"Records": [sqs_record("1"), sqs_record("2")]}) == "sqs"
    assert classify_event(SCHEDULED) == "schedule"
    assert classify_event({"job": "train"}) == "schedule"  # a rule's constant Input


@pytest.mark.parametrize(
    "event",
    [
        [],
        {},
        {"Records": []},
        {"Records": [sqs_record("1"), {"eventSource": "aws:sns"}]},
        {"Records": [{"eventSource": "aws:s3"}]},
        {"httpMethod": "GET", "path": "/"},  # REST API v1: not what the gateway sends
        {"source": "aws.events", "detail-type": "Object Created"},
        {"job": "train", "requestContext": {}},
    ],
)
def test_anything_else_is_refused_with_a_clear_error(event: Any) -> None:
    with pytest.raises(UnsupportedEvent) as raised:
        classify_event(event)
    assert raised.value.status_code == 400 and raised.value.code == "unsupported_event"


def test_a_function_without_the_trigger_refuses_it() -> None:
    handler = function_handler(name="only_schedule", on_schedule=lambda event, context: {"ran": True})
    assert handler(SCHEDULED, None) == {"ran": True}
    with pytest.raises(UnsupportedEvent, match="no sqs trigger"):
        handler({"Records": [sqs_record("1")]}, None)


def test_queue_batches_report_only_the_failed_records() -> None:
    seen: list[str] = []

    def on_record(record: Any) -> None:
        seen.append(record.message_id)
        if record.body == "poison":
            raise ValueError("cannot use this one")

    handler = function_handler(name="consumer", on_record=on_record)
    event = {"Records": [sqs_record("a"), sqs_record("b", "poison"), sqs_record("c")]}
    assert handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "b"}]}
    assert seen == ["a", "b", "c"]
    # every record failing is still a report, not an exception
    assert consume_batch({"Records": [sqs_record("x", "poison")]}, None, on_record=on_record) == {
        "batchItemFailures": [{"itemIdentifier": "x"}]
    }


def test_a_batch_consumer_prepares_the_whole_batch_first() -> None:
    prepared: list[list[str]] = []

    def on_batch(records: Any) -> Any:
        prepared.append([r.message_id for r in records])
        return lambda record: None

    handler = function_handler(name="batched", on_batch=on_batch)
    assert handler({"Records": [sqs_record("a"), sqs_record("b")]}, None) == {"batchItemFailures": []}
    assert prepared == [["a", "b"]]


def test_json_log_lines_carry_the_correlation_id() -> None:
    record = logging.makeLogRecord({"name": "okyaku.x", "levelname": "INFO", "msg": "hello %s", "args": ("you",)})
    record.__dict__["report"] = {"n": 1}
    with correlation_id("req-1"):
        line = json.loads(JsonFormatter("svc").format(record))
    assert line["message"] == "hello you" and line["correlation_id"] == "req-1" and line["report"] == {"n": 1}
    assert "correlation_id" not in json.loads(JsonFormatter("svc").format(record))
