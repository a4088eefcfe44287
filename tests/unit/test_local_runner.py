"""The local runner's pure parts: HTTP API 2.0 events and responses, SQS batches, retries and
redrive, schedules. Time is passed in, so nothing here waits."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from okyaku.events import decode_change_event
from okyaku.events.envelope import CHANGE_EVENT_DETAIL_TYPE, CHANGE_EVENT_SOURCE, eventbridge_envelope
from okyaku.events.model import ChangeEvent
from okyaku.lambda_events import (
    build_http_event,
    failed_message_ids,
    http_response_from_result,
    scheduled_event,
    sqs_record,
)
from okyaku.local.event_patterns import event_pattern_matches
from okyaku.local.runner import LocalRunner
from okyaku.local.scheduler import Scheduler
from okyaku.local.sqs import LocalQueue, QueuedMessage, lambda_message_attributes
from okyaku.local.template import (
    HttpRoute,
    QueueSpec,
    ScheduleEvent,
    SqsEventSource,
    TemplateError,
    parse_template,
)

ROUTE = HttpRoute("CrmApiFunction", "ContactsProxy", "ANY", "/api/v1/contacts/{proxy+}")


def http_event(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "method": "post",
        "raw_path": "/api/v1/contacts/a%20b",
        "raw_query": "tag=x&tag=y&limit=5&empty=",
        "headers": [
            ("Host", "127.0.0.1:3000"),
            ("Content-Type", "application/json"),
            ("X-Multi", "1"),
            ("x-multi", "2"),
            ("Cookie", "session=abc; theme=dark"),
            ("User-Agent", "pytest"),
        ],
        "body": b'{"first_name": "Ada"}',
        "source_ip": "127.0.0.1",
        "now": datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
    }
    arguments.update(overrides)
    return build_http_event(ROUTE, {"proxy": "a%20b"}, **arguments)


def test_http_event_has_the_payload_2_0_shape() -> None:
    event = http_event()
    assert event["version"] == "2.0"
    assert event["routeKey"] == event["requestContext"]["routeKey"] == "ANY /api/v1/contacts/{proxy+}"
    assert event["rawPath"] == "/api/v1/contacts/a%20b"
    assert event["requestContext"]["http"] == {
        "method": "POST",
        "path": "/api/v1/contacts/a b",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "pytest",
    }
    assert event["requestContext"]["stage"] == "$default"
    assert event["requestContext"]["time"] == "25/Nov/2026:09:30:00 +0000"
    assert event["requestContext"]["timeEpoch"] == 1795599000000
    # Headers lower-cased, repeats joined with commas, cookies moved out of the headers.
    assert event["headers"]["x-multi"] == "1,2"
    assert event["headers"]["content-type"] == "application/json"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["headers"]["x-forwarded-proto"] == "http"
    assert event["headers"]["x-forwarded-port"] == "3000"
    assert event["rawQueryString"] == "tag=x&tag=y&limit=5&empty="
    assert event["queryStringParameters"] == {"tag": "x,y", "limit": "5", "empty": ""}
    assert event["pathParameters"] == {"proxy": "a b"}
    assert event["body"] == '{"first_name": "Ada"}' and event["isBase64Encoded"] is False


def test_binary_and_multipart_bodies_are_base64_encoded() -> None:
    multipart = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n\r\nname\r\nAda\r\n--x--'
    event = http_event(headers=[("content-type", "multipart/form-data; boundary=x")], body=multipart)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == multipart

    png = bytes([0x89, 0x50, 0x4E, 0x47, 0xFF, 0x00])
    event = http_event(headers=[("content-type", "image/png")], body=png)
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == png

    # Declared as text but not UTF-8: still delivered intact.
    event = http_event(headers=[("content-type", "text/csv")], body=b"caf\xe9")
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"caf\xe9"


def test_a_request_without_body_query_or_cookies_omits_those_keys() -> None:
    event = http_event(raw_query="", body=b"", headers=[("host", "localhost")])
    for absent in ("body", "cookies", "queryStringParameters"):
        assert absent not in event
    assert event["isBase64Encoded"] is False


def test_handler_responses_follow_api_gateway_rules() -> None:
    response = http_response_from_result(
        {
            "statusCode": 201,
            "headers": {"content-type": "application/json", "etag": '"1"'},
            "multiValueHeaders": {"x-trace": ["a", "b"], "etag": ["ignored"]},
            "cookies": ["session=abc; HttpOnly", "theme=dark"],
            "body": '{"id": 1}',
            "isBase64Encoded": False,
        }
    )
    assert response.status == 201
    assert ("etag", '"1"') in response.headers and ("etag", "ignored") not in response.headers
    assert [v for k, v in response.headers if k == "x-trace"] == ["a", "b"]
    assert [v for k, v in response.headers if k == "set-cookie"] == ["session=abc; HttpOnly", "theme=dark"]
    assert response.body == b'{"id": 1}'

    binary = http_response_from_result(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    )
    assert binary.body == b"\x00\x01"

    # No statusCode: 200 with the returned value as JSON.
    inferred = http_response_from_result({"hello": "world"})
    assert (inferred.status, json.loads(inferred.body)) == (200, {"hello": "world"})
    assert ("content-type", "application/json") in inferred.headers

    assert http_response_from_result({"statusCode": "oops"}).status == 500
    assert http_response_from_result({"statusCode": 204}).body == b""


# --- SQS ---------------------------------------------------------------------------------------


def change_event(entity_type: str = "contact", operation: str = "created") -> ChangeEvent:
    return ChangeEvent(
        event_id=uuid.uuid4(),
        organization_id=uuid.uuid4(),
        entity_type=entity_type,
        entity_id=uuid.uuid4(),
        operation=operation,  # type: ignore[arg-type]
        changed_fields=["email"],
        version=1,
        occurred_at=datetime(2026, 11, 25, tzinfo=UTC),
    )


def test_sqs_records_carry_the_change_event_like_lambda_delivers_it() -> None:
    event = change_event()
    message = QueuedMessage(
        "m-1", event.model_dump_json(), lambda_message_attributes(event), 1_700_000_000_000, 2, 1_700_000_000_100
    )
    record = sqs_record(message, "ChangeEventsQueue")
    assert decode_change_event(record["body"]) == event
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:ChangeEventsQueue"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["attributes"]["SentTimestamp"] == "1700000000000"
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert record["messageAttributes"]["entity_type"] == {
        "stringValue": "contact",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["operation"]["stringValue"] == "created"
    assert record["receiptHandle"] != sqs_record(message, "ChangeEventsQueue")["receiptHandle"]


@pytest.mark.parametrize(
    ("result", "error", "report", "failed"),
    [
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, None, True, {"b"}),
        ({"batchItemFailures": []}, None, True, set()),
        ({"batchItemFailures": None}, None, True, set()),
        (None, None, True, set()),
        ({}, None, True, set()),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, None, True, {"a", "b", "c"}),  # unknown id
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None, True, {"a", "b", "c"}),
        ({"batchItemFailures": [{"id": "b"}]}, None, True, {"a", "b", "c"}),  # bad key name
        ("not a dict", None, True, {"a", "b", "c"}),
        (None, RuntimeError("boom"), True, {"a", "b", "c"}),
        (None, RuntimeError("boom"), False, {"a", "b", "c"}),
        # Without ReportBatchItemFailures the response is ignored: the batch succeeded.
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, None, False, set()),
    ],
)
def test_which_records_lambda_retries(result: Any, error: Exception | None, report: bool, failed: set[str]) -> None:
    assert failed_message_ids(result, error, ["a", "b", "c"], report) == failed


def make_queue(max_receive_count: int | None = 3, retry_delay_s: float = 1.0) -> LocalQueue:
    source = SqsEventSource("Consumer", "Changes", "Q", batch_size=2, report_batch_item_failures=True)
    queue = QueueSpec("Q", visibility_timeout_s=60, dead_letter_queue="DLQ", max_receive_count=max_receive_count)
    return LocalQueue(source, queue, retry_delay_s=retry_delay_s)


def test_queue_delivers_in_batches_and_hides_messages_in_flight() -> None:
    queue = make_queue()
    queue.send([("one", {}), ("two", {}), ("three", {})], now=0.0)
    first = queue.receive(now=0.0)
    assert [m.body for m in first] == ["one", "two"]  # BatchSize 2
    assert [m.receive_count for m in first] == [1, 1]
    second = queue.receive(now=0.0)
    assert [m.body for m in second] == ["three"]
    assert queue.receive(now=0.0) == []  # all in flight
    queue.settle(first, failed=set(), now=0.1)
    queue.settle(second, failed=set(), now=0.1)
    assert queue.pending() == 0 and queue.delivered == 3


def test_only_failed_records_come_back_after_a_backoff() -> None:
    queue = make_queue(retry_delay_s=1.0)
    queue.send([("ok", {}), ("bad", {})], now=0.0)
    batch = queue.receive(now=0.0)
    bad = next(m for m in batch if m.body == "bad")
    queue.settle(batch, failed={bad.message_id}, now=10.0, error="reported")
    assert queue.delivered == 1 and queue.retried == 1
    assert queue.receive(now=10.5) == []  # still backing off (1 s)
    (again,) = queue.receive(now=11.0)
    assert (again.message_id, again.body, again.receive_count) == (bad.message_id, "bad", 2)
    queue.settle([again], failed={again.message_id}, now=20.0)
    assert queue.receive(now=21.5) == []  # the backoff doubles: 2 s
    assert [m.receive_count for m in queue.receive(now=22.0)] == [3]


def test_a_record_failing_max_receive_count_times_goes_to_the_dead_letters() -> None:
    queue = make_queue(max_receive_count=2, retry_delay_s=0.0)
    queue.send([("poison", {})], now=0.0)
    for attempt in (1, 2):
        (message,) = queue.receive(now=float(attempt))
        assert message.receive_count == attempt
        queue.settle([message], failed={message.message_id}, now=float(attempt), error="ValueError('bad')")
    assert queue.pending() == 0
    (dead,) = queue.dead_letters
    assert (dead.body, dead.receive_count, dead.function_id, dead.error) == (
        "poison",
        2,
        "Consumer",
        "ValueError('bad')",
    )


def test_without_a_redrive_policy_failures_retry_with_the_backoff_capped_by_the_visibility_timeout() -> None:
    queue = make_queue(max_receive_count=None, retry_delay_s=10.0)
    queue.send([("flaky", {})], now=0.0)
    now = 0.0
    for _ in range(8):
        (message,) = queue.receive(now=now)
        queue.settle([message], failed={message.message_id}, now=now)
        next_visible = queue.next_visible_at()
        assert next_visible is not None and next_visible - now <= 60
        now = next_visible
    assert queue.dead_letters == [] and queue.pending() == 1


# --- schedules ---------------------------------------------------------------------------------


def rule(name: str, expression: str, enabled: bool = True, input_: str | None = None) -> ScheduleEvent:
    return ScheduleEvent("Fn", name, name, expression, enabled, input_)


def test_scheduler_fires_rules_when_due_and_only_then() -> None:
    start = datetime(2026, 11, 25, 10, 0, 20, tzinfo=UTC)
    scheduler = Scheduler(
        [rule("Every5", "rate(5 minutes)"), rule("Hourly", "cron(0 * * * ? *)"), rule("Off", "rate(1 minute)", False)],
        start,
    )
    assert scheduler.next_wakeup() == start + timedelta(minutes=5)
    assert scheduler.due(start + timedelta(minutes=4)) == []
    fired = scheduler.due(start + timedelta(minutes=5))
    assert [(r.rule_name, when) for r, when in fired] == [("Every5", start + timedelta(minutes=5))]
    assert scheduler.next_fire["Every5"] == start + timedelta(minutes=10)
    fired = scheduler.due(datetime(2026, 11, 25, 11, 0, 0, tzinfo=UTC))
    assert {r.rule_name for r, _ in fired} == {"Every5", "Hourly"}
    assert scheduler.next_fire["Hourly"] == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert scheduler.next_fire["Off"] is None


def test_scheduled_events_look_like_eventbridge_sends_them() -> None:
    when = datetime(2026, 11, 25, 10, 5, tzinfo=UTC)
    event = scheduled_event(rule("Nightly", "cron(0 2 * * ? *)"), when)
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["time"] == "2026-11-25T10:05:00Z"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/Nightly"]
    assert event["detail"] == {} and event["version"] == "0"
    assert scheduled_event(rule("WithInput", "rate(1 day)", input_='{"job": "train"}'), when) == {"job": "train"}


# --- the change-event bus: rules, patterns, per-consumer queues --------------------------------


def envelope(entity_type: str = "contact", operation: str = "created") -> dict[str, Any]:
    return eventbridge_envelope(change_event(entity_type, operation), account="123456789012", region="us-east-1")


def test_the_eventbridge_envelope_carries_the_event_in_detail() -> None:
    event = change_event("deal", "updated")
    body = eventbridge_envelope(event, account="123456789012", region="eu-west-1", event_id="e-1")
    assert body["source"] == CHANGE_EVENT_SOURCE and body["detail-type"] == CHANGE_EVENT_DETAIL_TYPE
    assert (body["id"], body["region"], body["account"], body["version"]) == ("e-1", "eu-west-1", "123456789012", "0")
    assert decode_change_event(json.dumps(body)) == event
    assert decode_change_event(event.model_dump_json()) == event
    sns = {"Type": "Notification", "MessageId": "m", "Message": event.model_dump_json()}
    assert decode_change_event(json.dumps(sns)) == event
    for not_an_event in ('{"detail-type": "x", "detail": {"not": "an event"}}', "[]", "nope"):
        with pytest.raises(ValueError):
            decode_change_event(not_an_event)


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        ({"source": ["okyaku.crm"]}, True),
        ({"source": ["other"]}, False),
        ({"detail": {"entity_type": ["deal", "contact"]}}, True),
        ({"detail": {"entity_type": ["deal"]}}, False),
        ({"detail": {"entity_type": [{"anything-but": ["pipeline", "deal"]}]}}, True),
        ({"detail": {"entity_type": [{"anything-but": "contact"}]}}, False),
        ({"detail": {"entity_type": [{"prefix": "con"}]}}, True),
        ({"detail": {"entity_type": [{"suffix": "act"}]}}, True),
        ({"detail": {"entity_type": [{"equals-ignore-case": "CONTACT"}]}}, True),
        ({"detail": {"changed_fields": ["email"]}}, True),  # an array matches when any element does
        ({"detail": {"changed_fields": ["name"]}}, False),
        ({"detail": {"version": [{"numeric": [">", 0, "<=", 1]}]}}, True),
        ({"detail": {"version": [{"numeric": [">", 1]}]}}, False),
        ({"detail": {"missing": [{"exists": False}]}}, True),
        ({"detail": {"missing": [{"exists": True}]}}, False),
        ({"detail": {"missing": ["x"]}}, False),
        ({"detail": {"entity_type": {"nested": ["x"]}}}, False),  # a scalar is not an object
        ({"source": ["okyaku.crm"], "detail-type": ["CRM Record Changed"], "detail": {"operation": ["created"]}}, True),
    ],
)
def test_event_patterns_match_like_eventbridge(pattern: dict[str, Any], matches: bool) -> None:
    event = envelope("contact", "created")
    event["detail"]["changed_fields"] = ["email", "phone"]
    assert event_pattern_matches(pattern, event) is matches


BUS_TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals: {Function: {Runtime: python3.11, Environment: {Variables: {CHANGE_EVENTS_BUS_NAME: !GetAtt Bus.Name}}}}
Resources:
  Bus: {Type: AWS::Events::EventBus, Properties: {Name: changes}}
  Deals:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn
      Handler: app.handler
      Events: {Changes: {Type: SQS, Properties: {Queue: !GetAtt DealsQueue.Arn}}}
  Everything:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn
      Handler: app.handler
      Events: {Changes: {Type: SQS, Properties: {Queue: !GetAtt AllQueue.Arn}}}
  DealsRule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !GetAtt Bus.Name
      EventPattern: {source: [okyaku.crm], detail: {entity_type: [deal]}}
      Targets: [{Id: q, Arn: !GetAtt DealsQueue.Arn}]
  AllRule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !GetAtt Bus.Name
      EventPattern: '{"source": ["okyaku.crm"]}'
      Targets: [{Id: q, Arn: !GetAtt AllQueue.Arn}]
  OffRule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !GetAtt Bus.Name
      State: DISABLED
      EventPattern: {source: [okyaku.crm]}
      Targets: [{Id: q, Arn: !GetAtt DealsQueue.Arn}]
  DealsQueue: {Type: AWS::SQS::Queue}
  AllQueue: {Type: AWS::SQS::Queue}
"""


def write_bus_template(tmp_path: Path, text: str = BUS_TEMPLATE) -> Path:
    (tmp_path / "fn").mkdir(exist_ok=True)
    (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return None\n")
    path = tmp_path / "template.yaml"
    path.write_text(text)
    return path


def test_the_runner_routes_change_events_through_the_bus_rules_to_each_consumers_queue(tmp_path: Path) -> None:
    runner = LocalRunner(write_bus_template(tmp_path), port=0, apply_environment=False)
    assert runner.template.change_event_buses == frozenset({"Bus"})
    assert [r.logical_id for r in runner.template.rules_on("Bus")] == ["DealsRule", "AllRule"]  # OffRule is off
    deal, contact = change_event("deal"), change_event("contact")
    runner.publish_change_events([deal, contact])
    queues = {q.source.queue: q for q in runner.queues}
    bodies = {
        name: [json.loads(m.body) for m in queue.receive(now=1e9, max_messages=10)] for name, queue in queues.items()
    }
    assert [decode_change_event(json.dumps(b)) for b in bodies["DealsQueue"]] == [deal]
    assert [decode_change_event(json.dumps(b)) for b in bodies["AllQueue"]] == [deal, contact]
    assert all(b["detail-type"] == CHANGE_EVENT_DETAIL_TYPE for b in bodies["AllQueue"])
    assert runner.routed == {"DealsRule": 1, "AllRule": 2, "OffRule": 0}
    status = runner.status()
    (bus,) = status["buses"]
    assert bus["bus"] == "Bus" and [r["matched"] for r in bus["rules"]] == [1, 2]


def test_consumers_of_one_queue_compete_for_its_messages(tmp_path: Path) -> None:
    text = BUS_TEMPLATE.replace("!GetAtt AllQueue.Arn}}}", "!GetAtt DealsQueue.Arn}}}", 1)
    runner = LocalRunner(write_bus_template(tmp_path, text), port=0, apply_environment=False)
    deals = [change_event("deal") for _ in range(4)]
    runner.publish_change_events(deals)
    received = {q.source.function_id: len(q.receive(now=1e9, max_messages=10)) for q in runner.queues}
    assert received == {"Deals": 2, "Everything": 2}  # each message once, to one of them


@pytest.mark.parametrize(
    ("rule", "error"),
    [
        ("EventBusName: elsewhere\n      EventPattern: {source: [x]}", "EventBusName must name a bus"),
        ("EventBusName: !GetAtt Bus.Name\n      EventPattern: {source: x}", "non-empty arrays"),
        ("EventBusName: !GetAtt Bus.Name\n      EventPattern: {source: [{wildcard: 'x*'}]}", "unsupported matcher"),
        (
            "EventBusName: !GetAtt Bus.Name\n      EventPattern: {source: [x]}\n"
            "      Targets: [{Id: q, Arn: !GetAtt AllQueue.Arn, InputPath: $.detail}]",
            "delivers whole events",
        ),
    ],
)
def test_rules_the_runner_cannot_run_are_refused(tmp_path: Path, rule: str, error: str) -> None:
    text = BUS_TEMPLATE.replace(
        "  OffRule:\n    Type: AWS::Events::Rule\n    Properties:\n      EventBusName: !GetAtt Bus.Name\n"
        "      State: DISABLED\n      EventPattern: {source: [okyaku.crm]}\n"
        "      Targets: [{Id: q, Arn: !GetAtt DealsQueue.Arn}]\n",
        f"  BadRule:\n    Type: AWS::Events::Rule\n    Properties:\n      {rule}\n",
    )
    assert "BadRule" in text
    with pytest.raises(TemplateError, match=error):
        parse_template(write_bus_template(tmp_path, text))
