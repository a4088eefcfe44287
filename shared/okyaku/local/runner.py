"""The local runner: ``template.yaml`` served on localhost with the real handlers, in-process.

- Every HttpApi route is served by a stdlib ``ThreadingHTTPServer`` that builds an API Gateway
  HTTP API payload 2.0 event per request and writes back the handler's response.
- Change events are routed as the template wires them: put on the bus that
  ``CHANGE_EVENTS_BUS_NAME`` names, each rule whose event pattern matches sends EventBridge's
  envelope to its target queues (one per consumer); or sent raw to the queue that
  ``CHANGE_EVENTS_QUEUE_URL`` names. Each SQS event source has an in-memory queue; a consumer
  thread delivers its messages as SQS events in batches of ``BatchSize``, honours
  ``batchItemFailures`` (only failed records come back, after a backoff) and moves a record to
  the queue's dead-letter list after the RedrivePolicy's ``maxReceiveCount``. Event sources that
  share one queue compete for its messages, as on AWS.
- Every ``Schedule`` rule fires on its rate/cron with an EventBridge scheduled event.

Local differences from AWS, on purpose: queues live in memory (undelivered messages are gone
when the runner stops; the outbox keeps the records' events), retries back off from
``retry_delay_s`` instead of waiting a whole visibility timeout, all functions share one process
and its environment, and a function that overruns its Timeout is logged rather than stopped.

Besides the template's routes it answers ``GET /_okyaku/status`` (queues, dead letters,
schedules) and ``POST /_okyaku/schedules/<rule>/fire`` (run a rule now).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import itertools
import json
import logging
import os
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from okyaku.events.envelope import eventbridge_envelope
from okyaku.events.model import ChangeEvent
from okyaku.events.publishers import sqs_entry
from okyaku.local.template import (
    PSEUDO_PARAMETERS,
    EventRule,
    FunctionSpec,
    HttpRoute,
    QueueSpec,
    ScheduleEvent,
    SqsEventSource,
    Template,
    parse_template,
)
from okyaku.runtime import Runtime

logger = logging.getLogger(__name__)

REGION = PSEUDO_PARAMETERS["AWS::Region"]
ACCOUNT_ID = PSEUDO_PARAMETERS["AWS::AccountId"]
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API's payload limit
_TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "yaml", "csv")
_module_counter = itertools.count(1)


def queue_arn(queue_id: str) -> str:
    return queue_id if queue_id.startswith("arn:") else f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{queue_id}"


def rule_arn(rule_name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{rule_name}"


# --- functions: loading and invoking handlers ------------------------------------------------


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


def load_handler_module(spec: FunctionSpec, module_name: str | None = None) -> ModuleType:
    """Import the function's handler file under a name of its own, with its folder importable."""
    path = spec.module_file
    if not path.is_file():
        raise FileNotFoundError(f"{spec.logical_id}: handler file {path} does not exist")
    name = module_name or f"okyaku_function_{spec.logical_id}"
    if name in sys.modules:  # a second load (tests, a second runner) gets a module of its own
        name = f"{name}_{next(_module_counter)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(spec.code_dir))
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(str(spec.code_dir))
    return module


def _new_event_loop_for_thread() -> None:
    # Mangum runs the ASGI app on the calling thread's event loop; each worker gets its own.
    asyncio.set_event_loop(asyncio.new_event_loop())


class FunctionHost:
    """One function's handler, imported on first use, invoked on a small pool of worker threads
    (each one like a Lambda instance: one event at a time)."""

    def __init__(self, spec: FunctionSpec, *, concurrency: int = 4) -> None:
        self.spec = spec
        self._handler: Callable[[Any, Any], Any] | None = None
        self._import_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency,
            thread_name_prefix=f"fn-{spec.logical_id}",
            initializer=_new_event_loop_for_thread,
        )

    @property
    def handler(self) -> Callable[[Any, Any], Any]:
        with self._import_lock:
            if self._handler is None:
                started = time.perf_counter()
                module = load_handler_module(self.spec)
                handler = getattr(module, self.spec.attribute, None)
                if not callable(handler):
                    raise AttributeError(f"{self.spec.module_file} has no callable {self.spec.attribute!r}")
                self._handler = handler
                logger.info(
                    "%s: imported %s in %.0f ms",
                    self.spec.logical_id,
                    self.spec.handler,
                    (time.perf_counter() - started) * 1000,
                )
            return self._handler

    def _call(self, event: Any) -> Any:
        context = LambdaContext(self.spec.logical_id, self.spec.memory_mb, self.spec.timeout_s)
        try:
            return self.handler(event, context)
        finally:
            elapsed = time.monotonic() - context.started
            if elapsed > self.spec.timeout_s:
                logger.warning(
                    "%s ran %.1f s, past its Timeout of %d s: Lambda would have stopped it",
                    self.spec.logical_id,
                    elapsed,
                    self.spec.timeout_s,
                )

    def submit(self, event: Any) -> Future[Any]:
        return self._executor.submit(self._call, event)

    def invoke(self, event: Any) -> Any:
        """Run the handler with ``event`` and return its result (or raise its error)."""
        return self.submit(event).result()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


# --- HTTP API payload 2.0 --------------------------------------------------------------------


def _is_text(content_type: str) -> bool:
    content_type = content_type.lower()
    return any(marker in content_type for marker in _TEXT_TYPES) and "multipart/" not in content_type


def build_http_event(
    route: HttpRoute,
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
    """The event API Gateway (HTTP API, payload format 2.0) sends for one request."""
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
        "routeKey": route.route_key,
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
            "routeKey": route.route_key,
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


def _gateway_error(status: int, message: str) -> HttpResponse:
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
        return _gateway_error(500, "Internal Server Error")
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


# --- SQS -------------------------------------------------------------------------------------


@dataclass
class QueuedMessage:
    message_id: str
    body: str
    message_attributes: dict[str, Any]
    sent_at_ms: int
    receive_count: int = 0
    first_received_at_ms: int | None = None
    visible_at: float = 0.0  # monotonic seconds


@dataclass
class DeadLetter:
    message_id: str
    function_id: str
    source_queue: str
    body: str
    receive_count: int
    error: str
    moved_at: str


def lambda_message_attributes(event: ChangeEvent) -> dict[str, Any]:
    """The change event's SQS message attributes (as SqsPublisher sends them), in Lambda's form."""
    attributes: dict[str, Any] = sqs_entry(0, event)["MessageAttributes"]
    return {
        name: {
            "stringValue": value["StringValue"],
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in attributes.items()
    }


def sqs_record(message: QueuedMessage, source_queue: str) -> dict[str, Any]:
    """One record of the SQS event Lambda delivers."""
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


class LocalQueue:
    """An SQS event source's queue, in memory: visibility, retries with backoff, redrive to a DLQ.

    Methods take ``now`` (monotonic seconds) so that the logic is testable without waiting.
    """

    def __init__(
        self,
        source: SqsEventSource,
        queue: QueueSpec | None,
        *,
        retry_delay_s: float = 1.0,
        dead_letters: list[DeadLetter] | None = None,
    ) -> None:
        self.source = source
        self.queue = queue
        self.retry_delay_s = retry_delay_s
        self.dead_letters = dead_letters if dead_letters is not None else []
        self.condition = threading.Condition()
        self._messages: list[QueuedMessage] = []
        self._in_flight: dict[str, QueuedMessage] = {}
        self.delivered = 0
        self.retried = 0

    @property
    def visibility_timeout_s(self) -> float:
        return float(self.queue.visibility_timeout_s if self.queue else 30)

    @property
    def max_receive_count(self) -> int | None:
        return self.queue.max_receive_count if self.queue else None

    def send(self, bodies: Sequence[tuple[str, dict[str, Any]]], now: float) -> list[str]:
        sent_at = int(time.time() * 1000)
        with self.condition:
            ids = []
            for body, attributes in bodies:
                message = QueuedMessage(str(uuid.uuid4()), body, attributes, sent_at, visible_at=now)
                self._messages.append(message)
                ids.append(message.message_id)
            self.condition.notify_all()
            return ids

    def visible_count(self, now: float) -> int:
        with self.condition:
            return sum(1 for m in self._messages if m.visible_at <= now)

    def next_visible_at(self) -> float | None:
        with self.condition:
            return min((m.visible_at for m in self._messages), default=None)

    def oldest_visible_since(self, now: float) -> float | None:
        with self.condition:
            return min((m.visible_at for m in self._messages if m.visible_at <= now), default=None)

    def receive(self, now: float, max_messages: int | None = None) -> list[QueuedMessage]:
        """Take up to a batch of visible messages; each is hidden until settled."""
        limit = max_messages or self.source.batch_size
        with self.condition:
            batch = [m for m in self._messages if m.visible_at <= now][:limit]
            received_at = int(time.time() * 1000)
            for message in batch:
                self._messages.remove(message)
                message.receive_count += 1
                message.first_received_at_ms = message.first_received_at_ms or received_at
                message.visible_at = now + self.visibility_timeout_s
                self._in_flight[message.message_id] = message
            return batch

    def settle(self, batch: Sequence[QueuedMessage], failed: set[str], now: float, error: str = "") -> None:
        """Delete what succeeded; put back what failed (after a backoff) or dead-letter it."""
        with self.condition:
            for message in batch:
                self._in_flight.pop(message.message_id, None)
                if message.message_id not in failed:
                    self.delivered += 1
                    continue
                limit = self.max_receive_count
                if limit is not None and message.receive_count >= limit:
                    self._dead_letter(message, error or "reported as failed")
                    continue
                self.retried += 1
                delay = min(self.retry_delay_s * 2 ** (message.receive_count - 1), self.visibility_timeout_s)
                message.visible_at = now + delay
                self._messages.append(message)
            self._messages.sort(key=lambda m: m.visible_at)
            self.condition.notify_all()

    def _dead_letter(self, message: QueuedMessage, error: str) -> None:
        dlq = (self.queue.dead_letter_queue if self.queue else None) or "dead-letters"
        self.dead_letters.append(
            DeadLetter(
                message_id=message.message_id,
                function_id=self.source.function_id,
                source_queue=self.source.queue,
                body=message.body,
                receive_count=message.receive_count,
                error=error[:2000],
                moved_at=datetime.now(UTC).isoformat(),
            )
        )
        logger.error(
            "%s: message %s failed %d times (maxReceiveCount); moved to %s: %s",
            self.source.function_id,
            message.message_id,
            message.receive_count,
            dlq,
            error[:500],
        )

    def pending(self) -> int:
        with self.condition:
            return len(self._messages) + len(self._in_flight)

    def busy(self, now: float) -> bool:
        """Messages ready now or being handled (not those waiting out a retry backoff)."""
        with self.condition:
            return bool(self._in_flight) or any(m.visible_at <= now for m in self._messages)


# --- schedules -------------------------------------------------------------------------------


def scheduled_event(rule: ScheduleEvent, fire_time: datetime) -> Any:
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


class Scheduler:
    """Next fire times of the enabled rules; ``due(now)`` returns the rules to fire now."""

    def __init__(self, rules: Sequence[ScheduleEvent], start: datetime) -> None:
        self.start = start
        self.rules = {rule.rule_name: rule for rule in rules}
        self.next_fire: dict[str, datetime | None] = {
            rule.rule_name: rule.schedule.next_fire(start, start) if rule.enabled else None for rule in rules
        }

    def due(self, now: datetime) -> list[tuple[ScheduleEvent, datetime]]:
        fired = []
        for name, when in self.next_fire.items():
            if when is not None and when <= now:
                fired.append((self.rules[name], when))
                # Missed fires (a suspended laptop) collapse into one, as they would on AWS.
                self.next_fire[name] = self.rules[name].schedule.next_fire(now, self.start)
        return fired

    def next_wakeup(self) -> datetime | None:
        return min((when for when in self.next_fire.values() if when is not None), default=None)


# --- the runner ------------------------------------------------------------------------------


class LocalRunner:
    """Serve a SAM template locally. ``start()`` returns once everything listens; ``stop()`` ends it."""

    def __init__(
        self,
        template_path: Path | str = "template.yaml",
        port: int = 3000,
        *,
        host: str = "127.0.0.1",
        retry_delay_s: float = 1.0,
        concurrency: int = 4,
        drain_timeout_s: float = 5.0,
        apply_environment: bool = True,
    ) -> None:
        self.template: Template = parse_template(template_path)
        self.host = host
        self.requested_port = port
        self.drain_timeout_s = drain_timeout_s
        self.apply_environment = apply_environment
        self.functions = {
            logical_id: FunctionHost(spec, concurrency=concurrency)
            for logical_id, spec in self.template.functions.items()
        }
        self.dead_letters: list[DeadLetter] = []
        self.queues = [
            LocalQueue(
                source,
                self.template.queues.get(source.queue),
                retry_delay_s=retry_delay_s,
                dead_letters=self.dead_letters,
            )
            for source in self.template.sqs_sources
            if source.enabled
        ]
        self._consumers: dict[str, list[LocalQueue]] = {}
        for queue in self.queues:
            self._consumers.setdefault(queue.source.queue, []).append(queue)
        self._turns = {queue_id: itertools.cycle(queues) for queue_id, queues in self._consumers.items()}
        self.routed: dict[str, int] = {rule.logical_id: 0 for rule in self.template.event_rules}
        self.unconsumed: dict[str, int] = {}  # messages sent to a queue no enabled function polls
        self.scheduler = Scheduler(self.template.schedules, datetime.now(UTC))
        self._running_rules: dict[str, Future[Any]] = {}
        self._stop = threading.Event()  # ends the runner's threads
        self._stop_requested = threading.Event()  # ends serve_until_signal
        self._threads: list[threading.Thread] = []
        self._server: ThreadingHTTPServer | None = None
        self.started = False

    # --- lifecycle ---

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.requested_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalRunner:
        self._server = ThreadingHTTPServer((self.host, self.requested_port), _make_request_handler(self))
        self._server.daemon_threads = True
        if self.apply_environment:
            apply_template_environment(self.template)
        # Before any handler is imported: their runtimes pick the publisher on first use.
        Runtime.hosted_publisher = self
        for queue in self.queues:
            self._spawn(f"sqs-{queue.source.function_id}-{queue.source.event_name}", self._consume, queue)
        self._spawn("scheduler", self._run_schedules)
        self._spawn("http", self._server.serve_forever)
        self.started = True
        logger.info("local runner listening on %s", self.url)
        return self

    def _spawn(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving, let the queues deliver what is ready (up to ``drain_timeout_s``), stop."""
        if not self.started:
            return
        self.started = False
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        deadline = time.monotonic() + self.drain_timeout_s
        while time.monotonic() < deadline and any(q.busy(time.monotonic()) for q in self.queues):
            time.sleep(0.05)
        self._stop.set()
        for queue in self.queues:
            with queue.condition:
                queue.condition.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)
        for function in self.functions.values():
            function.shutdown()
        Runtime.hosted_publisher = None
        left = sum(q.pending() for q in self.queues)
        if left:
            logger.warning("stopped with %d change events undelivered (in-memory queues)", left)
        logger.info("local runner stopped")

    def request_stop(self) -> None:
        self._stop_requested.set()

    def serve_until_signal(self) -> None:
        """Run until SIGINT/SIGTERM (or ``request_stop``), then stop cleanly."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            logger.info("received %s, stopping", signal.Signals(signum).name)
            self.request_stop()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if not self.started:
                self.start()
            while not self._stop_requested.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    def __enter__(self) -> LocalRunner:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- change events ---

    def publish(self, events: Sequence[ChangeEvent]) -> None:  # the hosted runtimes' EventPublisher
        self.publish_change_events(events)

    def publish_change_events(self, events: Sequence[ChangeEvent]) -> None:
        """The local publisher: events go where the template's wiring sends them."""
        now = time.monotonic()
        raw = [(event.model_dump_json(), lambda_message_attributes(event)) for event in events]
        for queue_id in sorted(self.template.change_event_queues):
            self.send_to_queue(queue_id, raw, now)
        for bus in sorted(self.template.change_event_buses):
            self.put_events(bus, events, now)

    def put_events(self, bus: str, events: Sequence[ChangeEvent], now: float | None = None) -> None:
        """EventBridge's part: each rule on ``bus`` whose pattern matches gets the envelope."""
        now = time.monotonic() if now is None else now
        by_queue: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for event in events:
            envelope = eventbridge_envelope(event, account=ACCOUNT_ID, region=REGION)
            body = json.dumps(envelope)
            for rule in self.template.rules_on(bus):
                if rule.matches(envelope):
                    self.routed[rule.logical_id] += 1
                    for queue_id in rule.queue_targets:
                        by_queue.setdefault(queue_id, []).append((body, {}))
        for queue_id, bodies in by_queue.items():
            self.send_to_queue(queue_id, bodies, now)

    def send_to_queue(self, queue_id: str, bodies: Sequence[tuple[str, dict[str, Any]]], now: float) -> None:
        """SQS's part: each message goes to one of the event sources that poll the queue."""
        turns = self._turns.get(queue_id)
        if turns is None:
            self.unconsumed[queue_id] = self.unconsumed.get(queue_id, 0) + len(bodies)
            logger.debug("%d messages for %s, which no function consumes", len(bodies), queue_id)
            return
        if len(self._consumers[queue_id]) == 1:
            self._consumers[queue_id][0].send(bodies, now)
            return
        for body in bodies:
            next(turns).send([body], now)

    def _consume(self, queue: LocalQueue) -> None:
        function = self.functions[queue.source.function_id]
        window = queue.source.maximum_batching_window_s
        while not self._stop.is_set():
            with queue.condition:
                now = time.monotonic()
                visible = queue.visible_count(now)
                if visible == 0:
                    next_visible = queue.next_visible_at()
                    timeout = 1.0 if next_visible is None else min(max(next_visible - now, 0.01), 1.0)
                    queue.condition.wait(timeout)
                    continue
                oldest = queue.oldest_visible_since(now)
                if window and visible < queue.source.batch_size and oldest is not None and now < oldest + window:
                    queue.condition.wait(min(oldest + window - now, 1.0))
                    continue
                batch = queue.receive(now)
            if not batch:
                continue
            event = {"Records": [sqs_record(message, queue.source.queue) for message in batch]}
            result: Any = None
            error: BaseException | None = None
            try:
                result = function.invoke(event)
            except Exception as caught:
                error = caught
                logger.exception("%s failed on a batch of %d", queue.source.function_id, len(batch))
            failed = failed_message_ids(
                result, error, [m.message_id for m in batch], queue.source.report_batch_item_failures
            )
            if failed and error is None:
                logger.warning("%s: %d of %d records failed", queue.source.function_id, len(failed), len(batch))
            queue.settle(batch, failed, time.monotonic(), repr(error) if error else "reported in batchItemFailures")

    # --- schedules ---

    def _run_schedules(self) -> None:
        while not self._stop.is_set():
            now = datetime.now(UTC)
            for rule, when in self.scheduler.due(now):
                self._fire(rule, when)
            wakeup = self.scheduler.next_wakeup()
            wait = 30.0 if wakeup is None else min(max((wakeup - datetime.now(UTC)).total_seconds(), 0.05), 30.0)
            self._stop.wait(wait)

    def _fire(self, rule: ScheduleEvent, when: datetime) -> Future[Any] | None:
        running = self._running_rules.get(rule.rule_name)
        if running is not None and not running.done():
            logger.warning("%s: the previous run is still going; skipping this one", rule.rule_name)
            return None
        logger.info("schedule %s (%s) -> %s", rule.rule_name, rule.expression, rule.function_id)
        future = self.functions[rule.function_id].submit(scheduled_event(rule, when))
        self._running_rules[rule.rule_name] = future

        def report(done: Future[Any]) -> None:
            error = done.exception()
            if error is not None:
                logger.error("%s failed: %r", rule.rule_name, error, exc_info=error)
            else:
                logger.info("%s -> %s", rule.rule_name, _short(done.result()))

        future.add_done_callback(report)
        return future

    def fire_schedule(self, rule_name: str) -> Any:
        """Run one rule now and return its function's result."""
        rule = next((r for r in self.template.schedules if r.rule_name == rule_name), None)
        if rule is None:
            raise KeyError(rule_name)
        return self.functions[rule.function_id].invoke(scheduled_event(rule, datetime.now(UTC)))

    # --- status ---

    def status(self) -> dict[str, Any]:
        return {
            "template": str(self.template.path),
            "url": self.url,
            "functions": sorted(self.functions),
            "routes": [f"{r.route_key} -> {r.function_id}" for r in self.template.routes],
            "queues": [
                {
                    "function": q.source.function_id,
                    "event": q.source.event_name,
                    "queue": q.source.queue,
                    "pending": q.pending(),
                    "delivered": q.delivered,
                    "retried": q.retried,
                }
                for q in self.queues
            ],
            "buses": [
                {
                    "bus": bus,
                    "change_events": bus in self.template.change_event_buses,
                    "rules": [
                        _rule_status(rule, self.routed.get(rule.logical_id, 0)) for rule in self.template.rules_on(bus)
                    ],
                }
                for bus in sorted({*self.template.buses, *(r.bus for r in self.template.event_rules)})
            ],
            "unconsumed": dict(self.unconsumed),
            "dead_letters": [asdict(d) for d in self.dead_letters],
            "schedules": [
                {
                    "rule": rule.rule_name,
                    "function": rule.function_id,
                    "expression": rule.expression,
                    "enabled": rule.enabled,
                    "next_fire": _iso(self.scheduler.next_fire.get(rule.rule_name)),
                }
                for rule in self.template.schedules
            ],
        }


def _rule_status(rule: EventRule, routed: int) -> dict[str, Any]:
    return {"rule": rule.logical_id, "pattern": rule.pattern, "targets": list(rule.queue_targets), "matched": routed}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 300 else text[:297] + "..."


def apply_template_environment(template: Template) -> dict[str, str]:
    """Set the functions' environment variables that the template resolves to a value.

    Variables already set in this process win (``okyaku dev`` sets the database URLs); references
    to resources (the queue URL) are left out: locally the runner's publisher stands for them.
    """
    applied: dict[str, str] = {}
    for spec in template.functions.values():
        for name, raw in spec.environment.items():
            value = template.resolve(raw)
            if value and name not in os.environ:
                os.environ[name] = value
                applied[name] = value
    if applied:
        from okyaku.config import get_settings

        get_settings.cache_clear()
    return applied


# --- the HTTP front ----------------------------------------------------------------------------


def _make_request_handler(runner: LocalRunner) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        server_version = "okyaku-local"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

        def _read_body(self) -> bytes | None:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    total += size
                    if total > MAX_BODY_BYTES:
                        return None
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY_BYTES:
                return None
            return self.rfile.read(length) if length else b""

        def _send(self, response: HttpResponse) -> None:
            self.send_response(response.status)
            for name, value in response.headers:
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)

        def _dispatch(self) -> None:
            started = time.perf_counter()
            split = urllib.parse.urlsplit(self.path)
            raw_path = split.path or "/"
            body = self._read_body()
            if body is None:
                self.close_connection = True
                self._send(_gateway_error(413, "Request Entity Too Large"))
                return
            if raw_path.startswith("/_okyaku/"):
                response = self._local_admin(raw_path)
                self._send(response)
                return
            # Matched on the path as sent, so that an encoded "/" (%2F) stays inside its segment.
            found = runner.template.match_route(self.command, raw_path) or runner.template.match_route(
                self.command, urllib.parse.unquote(raw_path)
            )
            if found is None:
                response = _gateway_error(404, "Not Found")
                function_id = "-"
            else:
                route, path_parameters = found
                function_id = route.function_id
                event = build_http_event(
                    route,
                    path_parameters,
                    method=self.command,
                    raw_path=raw_path,
                    raw_query=split.query,
                    headers=self.headers.items(),
                    body=body,
                    source_ip=self.client_address[0],
                )
                try:
                    response = http_response_from_result(runner.functions[function_id].invoke(event))
                except Exception:
                    logger.exception("%s raised on %s %s", function_id, self.command, raw_path)
                    response = _gateway_error(500, "Internal Server Error")
            self._send(response)
            logger.info(
                "%s %s -> %d (%s, %.0f ms)",
                self.command,
                self.path,
                response.status,
                function_id,
                (time.perf_counter() - started) * 1000,
            )

        def _local_admin(self, path: str) -> HttpResponse:
            def reply(status: int, value: Any) -> HttpResponse:
                body = json.dumps(value, default=str, indent=2).encode()
                return HttpResponse(status, [("content-type", "application/json")], body)

            if path == "/_okyaku/status" and self.command == "GET":
                return reply(200, runner.status())
            parts = path.strip("/").split("/")
            if len(parts) == 4 and parts[1] == "schedules" and parts[3] == "fire" and self.command == "POST":
                rule_name = urllib.parse.unquote(parts[2])
                try:
                    result = runner.fire_schedule(rule_name)
                except KeyError:
                    return reply(404, {"message": f"no schedule rule {rule_name!r}"})
                except Exception as error:
                    logger.exception("%s failed", rule_name)
                    return reply(500, {"rule": rule_name, "error": repr(error)})
                return reply(200, {"rule": rule_name, "result": result})
            return reply(404, {"message": "Not Found"})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _dispatch

    return RequestHandler
