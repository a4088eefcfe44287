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
(each still reads its own template environment: ``lambda_host``), and a function that overruns
its Timeout is logged rather than stopped.

Besides the template's routes it answers ``GET /_okyaku/status`` (queues, dead letters,
schedules) and ``POST /_okyaku/schedules/<rule>/fire`` (run a rule now), to a caller with the
runner's token (``admin_token``, random per start unless given; ``okyaku dev`` prints it).

With ``http_workers`` > 1 the HTTP routes are served by that many processes sharing the port
(this one and ``http_workers - 1`` workers, ``okyaku.local.http_workers``): one process runs its
requests under one GIL, which capped the embedded default near one core. Queues, schedules and
the ``/_okyaku/`` routes stay here; a worker sends its change events to this process.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from types import FrameType
from typing import Any

from okyaku.config import get_settings
from okyaku.events.envelope import eventbridge_envelope
from okyaku.events.model import ChangeEvent
from okyaku.lambda_events import ACCOUNT_ID, REGION, HttpResponse, failed_message_ids, scheduled_event, sqs_record
from okyaku.local.http_front import LocalServer, ReusePortServer, answer_runner_route, make_request_handler
from okyaku.local.http_workers import WorkerProcess, WorkerSettings
from okyaku.local.lambda_host import FunctionHost, release_thread_event_loop, template_environment
from okyaku.local.scheduler import Scheduler
from okyaku.local.sqs import DeadLetter, LocalQueue, lambda_message_attributes
from okyaku.local.template import EventRule, ScheduleEvent, Template, parse_template
from okyaku.runtime import Runtime

logger = logging.getLogger(__name__)
CONSOLE_SECRET = "CONSOLE_SESSION_SECRET"


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
        admin_token: str | None = None,
        http_workers: int = 1,
    ) -> None:
        if http_workers < 1:
            raise ValueError("http_workers must be at least 1")
        self.template: Template = parse_template(template_path)
        self.http_workers = http_workers
        self.concurrency = concurrency
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.host = host
        self.requested_port = port
        self.drain_timeout_s = drain_timeout_s
        # False: the functions read the process's environment only (tests that set their own).
        self.apply_environment = apply_environment
        self.functions = {
            logical_id: FunctionHost(
                spec,
                concurrency=concurrency,
                environment=template_environment(self.template, spec) if apply_environment else None,
            )
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
        self._server: LocalServer | None = None
        self._internal: LocalServer | None = None  # loopback only: the workers reach this process here
        self.workers: list[WorkerProcess] = []
        self._set_environment: list[str] = []  # variables this runner set, unset on stop
        self.started = False

    # --- lifecycle ---

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self.requested_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalRunner:
        handler = make_request_handler(self)
        server_class = ReusePortServer if self.http_workers > 1 else LocalServer
        self._server = server_class((self.host, self.requested_port), handler)
        # Before any handler is imported: their runtimes pick the publisher on first use.
        Runtime.hosted_publisher = self
        for queue in self.queues:
            self._spawn(f"sqs-{queue.source.function_id}-{queue.source.event_name}", self._consume, queue)
        self._spawn("scheduler", self._run_schedules)
        self._spawn("http", self._server.serve_forever)
        self.started = True
        if self.http_workers > 1:
            try:
                self._start_workers(handler)
            except BaseException:
                self.stop()
                raise
        logger.info("local runner listening on %s (%d HTTP processes)", self.url, self.http_workers)
        return self

    def _start_workers(self, handler: Any) -> None:
        if not os.environ.get(CONSOLE_SECRET):
            # A console session signed by one process must verify in the others: one secret for all.
            os.environ[CONSOLE_SECRET] = secrets.token_urlsafe(32)
            self._set_environment.append(CONSOLE_SECRET)
            get_settings.cache_clear()
        self._internal = LocalServer(("127.0.0.1", 0), handler)
        self._spawn("http-internal", self._internal.serve_forever)
        # Started together (each imports every HTTP function before it takes connections), then awaited.
        self.workers = [
            WorkerProcess.spawn(
                WorkerSettings(
                    index=index,
                    template=str(self.template.path),
                    host=self.host,
                    port=self.port,
                    runner_port=self._internal.server_address[1],
                    admin_token=self.admin_token,
                    concurrency=self.concurrency,
                    log_level=logging.getLogger("okyaku").getEffectiveLevel(),
                    apply_environment=self.apply_environment,
                )
            )
            for index in range(1, self.http_workers)
        ]
        for worker in self.workers:
            worker.wait_until_ready()

    def _spawn(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop serving, let the queues deliver what is ready (up to ``drain_timeout_s``), stop."""
        if not self.started:
            return
        self.started = False
        for worker in self.workers:  # first: a worker may still be sending change events here
            worker.stop()
        for server in (self._server, self._internal):
            if server is not None:
                server.shutdown()
                server.server_close()
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
        if self._set_environment:
            for name in self._set_environment:
                os.environ.pop(name, None)
            self._set_environment.clear()
            get_settings.cache_clear()  # no cached Settings keeps what this runner set
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

    def runner_route(self, method: str, target: str, headers: Message, body: bytes) -> HttpResponse:
        return answer_runner_route(self, method, target, headers, body)

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
        release_thread_event_loop()  # the invocations ran on this thread's loop

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
            "http_processes": [{"index": 0, "pid": os.getpid(), "alive": True}]
            + [{"index": w.index, "pid": w.pid, "alive": w.alive} for w in self.workers],
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
