"""OpenFaaS adapters: an OpenFaaS request (the ``python3-http-debian`` template's ``event``) turned
into the event the same Lambda handler takes, and its result turned back. No logic of its own.

What reaches a function, and what it becomes:

- a request through the gateway (``/function/<name>/api/v1/...``, the path as the app sees it)
  -> an API Gateway HTTP API payload 2.0 event (route ``$default``);
- the cron-connector (``X-Topic: cron-function``) -> an EventBridge scheduled event;
- a queue connector (SQS, NATS, Kafka... ``X-Topic: <queue or subject>``, the message as body)
  -> an SQS event of one record; a record the handler reports in ``batchItemFailures`` answers
  500, so the connector leaves the message for redelivery.

``X-Topic`` is a header anyone who reaches the gateway can send, so a trigger (any request with
``X-Topic``) runs only when it is signed: ``X-Okyaku-Timestamp`` (unix seconds, within
``OPENFAAS_TRIGGER_MAX_SKEW_S`` of now) and ``X-Okyaku-Signature: sha256=<hex>``, the HMAC-SHA256
with the deployment's trigger secret of ``"<timestamp>.<X-Topic>." + body`` (the topic is signed,
so a signed queue message cannot be replayed as a schedule). Unsigned or badly signed -> 401;
no secret configured -> 403; both with the error shape. The stock cron-connector and
connector-sdk connectors send only ``X-Topic``/``X-Connector`` (no signature, no custom header),
so schedules are fired by ``python -m okyaku.openfaas fire`` (a CronJob), which signs; a topic
listed in ``OPENFAAS_UNSIGNED_TOPICS`` is accepted unsigned (a gateway no one else reaches); see
infrastructure/openfaas/README.md. A function with no HTTP trigger answers plain HTTP with 404.

A function folder built for OpenFaaS holds ``app.py`` (from ``functions/<dir>``), the ``okyaku``
package and a ``handler.py`` that is ``handle = adapt(app.handler)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from okyaku.entry import UnsupportedEvent
from okyaku.errors import Forbidden, NotFound, OkyakuError, Unauthorized
from okyaku.lambda_events import (
    LambdaContext,
    NamedRule,
    SqsMessage,
    build_http_event,
    http_response_from_result,
    scheduled_event,
    sqs_record,
)

CRON_TOPIC = "cron-function"  # what the cron-connector sends in X-Topic
SIGNATURE_HEADER = "X-Okyaku-Signature"
TIMESTAMP_HEADER = "X-Okyaku-Timestamp"
DEFAULT_ROUTE_KEY = "$default"  # the gateway forwards every path of the function to it
LambdaHandler = Callable[[Any, Any], Any]


class OpenFaaSEvent(Protocol):
    """What the python3-http(-debian) template passes as ``event``."""

    body: bytes
    headers: Any  # a case-insensitive mapping (werkzeug Headers)
    method: str
    query: Any  # a multi-dict of the query string (werkzeug MultiDict)
    path: str


@dataclass
class Request:
    """An OpenFaaS-shaped request, for tests and for callers outside the template."""

    method: str = "GET"
    path: str = "/"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


def _header(headers: Any, name: str) -> str | None:
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    value = getter(name)
    if value is None and isinstance(headers, Mapping):
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return None if value is None else str(value)


def _header_items(headers: Any) -> Iterable[tuple[str, str]]:
    # werkzeug's Headers yields a repeated header once per value, as a dict of str cannot.
    return [(str(k), str(v)) for k, v in headers.items()]


def _query_string(query: Any) -> str:
    from urllib.parse import urlencode

    if hasattr(query, "items") and hasattr(query, "getlist"):
        return urlencode(list(query.items(multi=True)))
    return urlencode(list(dict(query or {}).items()))


def _context(function_name: str, timeout_s: int) -> LambdaContext:
    return LambdaContext(function_name, memory_limit_in_mb=0, timeout_s=timeout_s)


def _json_response(status: int, value: Any) -> dict[str, Any]:
    return {
        "statusCode": status,
        "body": json.dumps(value, default=str),
        "headers": {"content-type": "application/json"},
    }


def http_response(result: Any) -> dict[str, Any]:
    """The handler's HTTP API result as the template answers it (headers as pairs: cookies kept)."""
    response = http_response_from_result(result)
    # The template sends the body through str(): text is kept, bytes would not be.
    body = response.body.decode("utf-8", errors="replace")
    return {"statusCode": response.status, "body": body, "headers": response.headers}


def adapt(
    lambda_handler: LambdaHandler,
    *,
    function_name: str | None = None,
    timeout_s: int | None = None,
    schedule_rule: str | None = None,
) -> Callable[[OpenFaaSEvent, Any], dict[str, Any]]:
    """The OpenFaaS ``handle(event, context)`` for a Lambda handler.

    ``function_name``, ``timeout_s`` and ``schedule_rule`` default to the variables stack.yml
    sets: OKYAKU_FUNCTION, OKYAKU_TIMEOUT_S, OKYAKU_SCHEDULE_RULE.
    """

    def handle(event: OpenFaaSEvent, context: Any = None) -> dict[str, Any]:
        name = function_name or os.environ.get("OKYAKU_FUNCTION", "okyaku")
        timeout = timeout_s or int(os.environ.get("OKYAKU_TIMEOUT_S", "30"))
        topic = _header(event.headers, "X-Topic")
        if topic is not None:
            try:
                if topic not in _unsigned_topics():
                    verify_trigger(event, topic, _trigger_secret(), max_skew_s=_max_skew_s())
            except OkyakuError as refused:
                return _json_response(refused.status_code, refused.to_body())
            if CRON_TOPIC in _topics(topic):
                rule = schedule_rule or os.environ.get("OKYAKU_SCHEDULE_RULE") or f"{name}-cron"
                result = lambda_handler(scheduled(rule), _context(name, timeout))
                return _json_response(200, result)
            return _consume(lambda_handler, topic, event, _context(name, timeout))
        lambda_event = http_event(event)
        try:
            result = lambda_handler(lambda_event, _context(name, timeout))
        except UnsupportedEvent:  # a schedule- or queue-only function: no HTTP route at all
            return _json_response(404, NotFound(f"{name} has no HTTP routes").to_body())
        return http_response(result)

    return handle


def _topics(topic: str) -> list[str]:
    # The cron-connector sends the whole ``topic`` annotation ("cron-function,EmbeddingsQueue").
    return [part.strip() for part in topic.split(",") if part.strip()]


def _trigger_secret() -> str:
    from okyaku.config import get_settings

    settings = get_settings()
    secret = settings.openfaas_trigger_secret.get_secret_value()
    if not secret and settings.openfaas_trigger_secret_file:
        try:  # an OpenFaaS secret is a file under /var/openfaas/secrets/
            with open(settings.openfaas_trigger_secret_file, encoding="utf-8") as file:
                secret = file.read().strip()
        except OSError:
            secret = ""
    return secret


def _max_skew_s() -> int:
    from okyaku.config import get_settings

    return get_settings().openfaas_trigger_max_skew_s


def _unsigned_topics() -> set[str]:
    from okyaku.config import get_settings

    return {t.strip() for t in get_settings().openfaas_unsigned_topics.split(",") if t.strip()}


def trigger_signature(secret: str, timestamp: str, topic: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``"<timestamp>.<topic>." + body`` with the trigger secret."""
    message = f"{timestamp}.{topic}.".encode() + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signed_trigger_headers(secret: str, topic: str, body: bytes = b"", *, now: float | None = None) -> dict[str, str]:
    """The headers of a trigger request that :func:`verify_trigger` accepts."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        "X-Topic": topic,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: trigger_signature(secret, timestamp, topic, body),
    }


def verify_trigger(event: OpenFaaSEvent, topic: str, secret: str, *, max_skew_s: int, now: float | None = None) -> None:
    """Raise Unauthorized/Forbidden unless the trigger request is signed with ``secret``, recently."""
    if not secret:
        raise Forbidden(
            "triggers are refused: no trigger secret is configured (OPENFAAS_TRIGGER_SECRET)",
            code="trigger_secret_missing",
        )
    if event.method.upper() != "POST":
        raise Unauthorized("a trigger is a signed POST", code="invalid_trigger_signature")
    timestamp = _header(event.headers, TIMESTAMP_HEADER) or ""
    signature = _header(event.headers, SIGNATURE_HEADER) or ""
    if not timestamp.isdigit() or not signature:
        raise Unauthorized(
            f"a trigger needs {TIMESTAMP_HEADER} and {SIGNATURE_HEADER}", code="invalid_trigger_signature"
        )
    skew = abs((time.time() if now is None else now) - int(timestamp))
    if skew > max_skew_s:
        raise Unauthorized(
            "the trigger's timestamp is too far from now",
            code="invalid_trigger_signature",
            details={"max_skew_s": max_skew_s},
        )
    expected = trigger_signature(secret, timestamp, topic, event.body or b"")
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized("the trigger's signature does not match", code="invalid_trigger_signature")


def http_event(event: OpenFaaSEvent, *, now: datetime | None = None) -> dict[str, Any]:
    """The HTTP API payload 2.0 event for a request the gateway forwarded."""
    path = event.path or "/"
    source_ip = (_header(event.headers, "X-Forwarded-For") or "127.0.0.1").split(",")[0].strip()
    return build_http_event(
        DEFAULT_ROUTE_KEY,
        {"proxy": path.lstrip("/")} if path.strip("/") else {},
        method=event.method,
        raw_path=path,
        raw_query=_query_string(event.query),
        headers=_header_items(event.headers),
        body=event.body or b"",
        source_ip=source_ip,
        now=now,
    )


def scheduled(rule_name: str, now: datetime | None = None) -> Any:
    """The scheduled event EventBridge would send for the rule (the cron-connector fired it)."""
    return scheduled_event(NamedRule(rule_name), now or datetime.now(UTC))


def _consume(lambda_handler: LambdaHandler, topic: str, event: OpenFaaSEvent, context: LambdaContext) -> dict[str, Any]:
    body = event.body or b""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = base64.b64encode(body).decode("ascii")
    message_id = _header(event.headers, "X-Message-Id") or _header(event.headers, "X-Call-Id") or str(uuid.uuid4())
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    message = SqsMessage(message_id, text, {}, now_ms, receive_count=1, first_received_at_ms=now_ms)
    result = lambda_handler({"Records": [sqs_record(message, topic)]}, context)
    failures = (result or {}).get("batchItemFailures") if isinstance(result, dict) else None
    if failures:
        return _json_response(500, {"failed": [f.get("itemIdentifier") for f in failures], "topic": topic})
    return _json_response(200, result)


def unix_cron(expression: str) -> str:
    """An EventBridge ``rate()``/``cron()`` as the cron-connector's 5-field cron (UTC).

    Raises ValueError for what 5-field cron cannot say (a year, L, W, #, or a rate that does not
    divide the hour or the day).
    """
    text = expression.strip()
    if text.startswith("rate("):
        value, unit = text[5:-1].split()
        count, unit = int(value), unit.rstrip("s")
        if unit == "minute" and 60 % count == 0:
            return "* * * * *" if count == 1 else f"*/{count} * * * *"
        if unit == "hour" and 24 % count == 0:
            return "0 * * * *" if count == 1 else f"0 */{count} * * *"
        if unit == "day" and count == 1:
            return "0 0 * * *"
        raise ValueError(f"{expression}: no 5-field cron fires at that rate")
    if not (text.startswith("cron(") and text.endswith(")")):
        raise ValueError(f"{expression}: expected rate(...) or cron(...)")
    minutes, hours, day_of_month, month, day_of_week, year = text[5:-1].split()
    if year != "*":
        raise ValueError(f"{expression}: 5-field cron has no year")
    if any(mark in field_ for field_ in (day_of_month, day_of_week) for mark in ("L", "W", "#")):
        raise ValueError(f"{expression}: L, W and # have no 5-field equivalent")

    def weekday(token: str) -> str:  # EventBridge counts SUN=1..SAT=7, cron SUN=0..SAT=6
        return str(int(token) - 1) if token.isdigit() else token

    if day_of_week == "?":
        day_of_week = "*"
    else:
        day_of_week = ",".join(
            part if "/" in part else "-".join(weekday(t) for t in part.split("-")) for part in day_of_week.split(",")
        )
    return " ".join([minutes, hours, "*" if day_of_month == "?" else day_of_month, month, day_of_week])


def fire(gateway: str, function: str, *, secret: str, topic: str = CRON_TOPIC, body: bytes = b"") -> tuple[int, str]:
    """POST a signed trigger to ``<gateway>/function/<function>``; returns (status, body)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{gateway.rstrip('/')}/function/{function}",
        data=body,
        method="POST",
        headers=signed_trigger_headers(secret, topic, body) | {"X-Connector": "okyaku-fire"},
    )
    try:
        with urllib.request.urlopen(request, timeout=900) as response:
            return response.status, response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", errors="replace")


def main(argv: list[str] | None = None) -> int:
    """``python -m okyaku.openfaas fire <function> [--gateway URL] [--topic T]``: a signed trigger
    (what a Kubernetes CronJob runs in place of the cron-connector, which cannot sign)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m okyaku.openfaas", description=main.__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    fire_parser = commands.add_parser("fire", help="send a signed trigger to a function")
    fire_parser.add_argument("function", help="the OpenFaaS function name (stack.yml), e.g. outbox-relay")
    fire_parser.add_argument("--gateway", default=os.environ.get("OPENFAAS_URL", "http://gateway.openfaas:8080"))
    fire_parser.add_argument("--topic", default=CRON_TOPIC, help=f"X-Topic; default {CRON_TOPIC}")
    args = parser.parse_args(argv)
    secret = _trigger_secret()
    if not secret:
        parser.error("no trigger secret: set OPENFAAS_TRIGGER_SECRET or mount the okyaku-trigger-secret secret")
    status, text = fire(args.gateway, args.function, secret=secret, topic=args.topic)
    print(f"{status} {text}")
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    raise SystemExit(main())
