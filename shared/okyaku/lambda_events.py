"""Lambda's side of the three trigger shapes, for hosts that are not Lambda: the events API Gateway
(HTTP API, payload format 2.0), SQS and EventBridge schedules send a function, the ``context``
it gets, and how Lambda reads what the handler returned.

Used by the local runner (okyaku.local) and the OpenFaaS adapters (okyaku.openfaas), so that a
handler sees the same event wherever it runs. Pure: it imports nothing of okyaku.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

# The account and region the emulated events name (CloudFormation's pseudo parameters locally).
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
_TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv")


def queue_arn(queue_id: str) -> str:
    return queue_id if queue_id.startswith("arn:") else f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue_id}"


def rule_arn(rule_name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule_name}"


# --- the context -------------------------------------------------------------------------------


@dataclass
class LambdaContext:
    """What Lambda passes as ``context`` (the attributes handlers and Powertools read)."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        return f"local/{self.aws_request_id}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_s - (time.monotonic() - self.started)) * 1000))


# --- HTTP API payload 2.0 ----------------------------------------------------------------------


class Route(Protocol):
    """A route of the HTTP API (``ANY /api/v1/contacts/{proxy+}``)."""

    @property
    def route_key(self) -> str: ...


def _is_text(content_type: str) -> bool:
    content_type = content_type.lower()
    return any(marker in content_type for marker in _TEXT_TYPES) and "multipart/" not in content_type


def build_http_event(
    route: Route | str,
    path_parameters: Mapping[str, str],
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    source_ip: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The event API Gateway (HTTP API, payload format 2.0) sends for one request.

    ``route`` is the matched route, or its route key (``$default`` for the catch-all route).
    """
    route_key = route if isinstance(route, str) else route.route_key
    now = now or datetime.now(UTC)
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    cookies = [c.strip() for c in merged.pop("cookie", "").split(";") if c.strip()]
    merged.setdefault("x-forwarded-for", source_ip)
    merged.setdefault("x-forwarded-proto", "http")
    host = merged.get("host", "localhost")
    merged.setdefault("x-forwarded-port", host.rsplit(":", 1)[1] if ":" in host else "80")

    query: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(raw_query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": merged,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": "local",
            "domainName": host.split(":", 1)[0],
            "domainPrefix": host.split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": method.upper(),
                "path": urllib.parse.unquote(raw_path),
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": merged.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = {k: urllib.parse.unquote(v) for k, v in path_parameters.items()}
    if body:
        text: str | None = None
        if _is_text(merged.get("content-type", "text/plain")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
    return event


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def gateway_error(status: int, message: str) -> HttpResponse:
    """An error API Gateway answers itself (no route, too large, the function failed)."""
    body = json.dumps({"message": message}).encode()
    return HttpResponse(status, [("content-type", "application/json")], body)


def http_response_from_result(result: Any) -> HttpResponse:
    """Apply API Gateway's payload 2.0 rules to what the handler returned."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: API Gateway answers 200 with the returned value as a JSON body.
        text = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("content-type", "application/json")], text.encode())
    try:
        status = int(result["statusCode"])
    except (TypeError, ValueError):
        return gateway_error(500, "Internal Server Error")
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    single = {name.lower() for name, _ in headers}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if name.lower() not in single:
            headers.extend((str(name), str(v)) for v in values)
    headers.extend(("set-cookie", str(cookie)) for cookie in result.get("cookies") or [])
    body = result.get("body")
    if body is None:
        payload = b""
    elif result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = str(body).encode("utf-8")
    return HttpResponse(status, headers, payload)


# --- SQS ---------------------------------------------------------------------------------------


@dataclass
class SqsMessage:
    """A message as Lambda's SQS event source hands it over."""

    message_id: str
    body: str
    message_attributes: dict[str, Any]
    sent_at_ms: int
    receive_count: int = 0
    first_received_at_ms: int | None = None


def sqs_record(message: SqsMessage, source_queue: str) -> dict[str, Any]:
    """One record of the SQS event Lambda delivers (``source_queue``: a logical id or an ARN)."""
    return {
        "messageId": message.message_id,
        "receiptHandle": base64.b64encode(uuid.uuid4().bytes + message.message_id.encode()).decode(),
        "body": message.body,
        "attributes": {
            "ApproximateReceiveCount": str(message.receive_count),
            "SentTimestamp": str(message.sent_at_ms),
            "SenderId": "AIDAOKYAKULOCALRUNNER",
            "ApproximateFirstReceiveTimestamp": str(message.first_received_at_ms or message.sent_at_ms),
        },
        "messageAttributes": message.message_attributes,
        "md5OfBody": hashlib.md5(message.body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn(source_queue),
        "awsRegion": REGION,
    }


def failed_message_ids(
    result: Any, error: BaseException | None, batch_ids: Sequence[str], report_batch_item_failures: bool
) -> set[str]:
    """Which records of a batch Lambda would put back on the queue.

    Without ReportBatchItemFailures only an error fails the batch (all of it). With it, the
    response lists the failures; a malformed response fails the whole batch.
    """
    if error is not None:
        return set(batch_ids)
    if not report_batch_item_failures or result is None:
        return set()
    if not isinstance(result, dict):
        return set(batch_ids)
    failures = result.get("batchItemFailures")
    if not failures:
        return set()
    if not isinstance(failures, list):
        return set(batch_ids)
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not identifier or identifier not in batch_ids:
            return set(batch_ids)
        failed.add(str(identifier))
    return failed


# --- EventBridge schedules ---------------------------------------------------------------------


class ScheduleRule(Protocol):
    """A schedule rule, as far as its target sees it."""

    @property
    def rule_name(self) -> str: ...

    @property
    def input(self) -> str | None: ...  # a JSON string sent instead of the scheduled event


@dataclass(frozen=True)
class NamedRule:
    """A rule known by its name only (what the OpenFaaS cron-connector fires)."""

    rule_name: str
    input: str | None = None


def scheduled_event(rule: ScheduleRule, fire_time: datetime) -> Any:
    """What an EventBridge rule sends its target: the scheduled event, or the rule's Input."""
    if rule.input is not None:
        return json.loads(rule.input)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": fire_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [rule_arn(rule.rule_name)],
        "detail": {},
    }
