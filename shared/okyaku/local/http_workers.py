"""The local runner's HTTP workers: more processes serving the template's HTTP routes on the
runner's port (SO_REUSEPORT), so that requests are not all run under one GIL.

A worker is ``python -m okyaku.local.http_workers``, started by the runner
(:class:`WorkerProcess`). It reads its settings as one JSON line on stdin, imports every function
that has an HTTP route, then binds the port (until then the kernel gives its connections to the
others) and prints ``READY``. It ends when its stdin closes, so it never outlives the runner.

What stays in the runner, and how a worker reaches it over loopback (the runner's internal port,
with the runner's token):
- change events: the worker's publisher posts them to ``/_okyaku/events``; a failed post leaves
  them in the outbox for the relay, as any failed publish does;
- the ``/_okyaku/`` routes: a worker passes the request on as it came (the runner checks Host,
  Origin and token itself).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from email.message import Message

from okyaku.events.model import ChangeEvent
from okyaku.lambda_events import HttpResponse
from okyaku.local.http_front import ReusePortServer, error_response, make_request_handler
from okyaku.local.lambda_host import FunctionHost, template_environment
from okyaku.local.template import parse_template
from okyaku.runtime import Runtime

logger = logging.getLogger(__name__)
READY_TIMEOUT_S = 120.0  # importing every function on a busy 2-core machine takes seconds
STOP_TIMEOUT_S = 10.0
RUNNER_TIMEOUT_S = 30.0
# Hop-by-hop headers: they describe one connection, not the request passed on.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade"}


def default_http_workers() -> int:
    """One HTTP process per core, at most four (beyond that Postgres is the limit on a laptop)."""
    return max(1, min(os.cpu_count() or 1, 4))


@dataclass(frozen=True)
class WorkerSettings:
    index: int
    template: str
    host: str
    port: int
    runner_port: int  # the runner's internal listener, on 127.0.0.1
    admin_token: str
    concurrency: int
    log_level: int
    apply_environment: bool = True  # each function reads its own template environment, as in the runner


class RunnerConnection:
    """Requests from a worker to the runner's internal listener."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings

    def send(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> HttpResponse:
        connection = http.client.HTTPConnection("127.0.0.1", self.settings.runner_port, timeout=RUNNER_TIMEOUT_S)
        try:
            connection.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP:
                    connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            answer = connection.getresponse()
            kept = [(n, v) for n, v in answer.getheaders() if n.lower() not in _HOP_BY_HOP | {"server", "date"}]
            return HttpResponse(answer.status, kept, answer.read())
        finally:
            connection.close()


class ForwardingPublisher:
    """A worker's EventPublisher: the events go to the runner, which routes them to its queues."""

    def __init__(self, runner: RunnerConnection) -> None:
        self.runner = runner

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        settings = self.runner.settings
        body = json.dumps([event.model_dump(mode="json") for event in events]).encode()
        headers = [
            ("Host", f"127.0.0.1:{settings.port}"),
            ("Authorization", f"Bearer {settings.admin_token}"),
            ("Content-Type", "application/json"),
        ]
        # Any failure raises: the events stay pending in the outbox and the relay sends them.
        answer = self.runner.send("POST", "/_okyaku/events", headers, body)
        if answer.status != 200:
            raise RuntimeError(f"the runner refused {len(events)} change events: {answer.status} {answer.body[:200]!r}")


class HttpWorker:
    """What the front serves in a worker process: the template's HTTP functions, and the runner's
    own routes passed on to it."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.template = parse_template(settings.template)
        routed = {route.function_id for route in self.template.routes}
        self.functions = {
            logical_id: FunctionHost(
                spec,
                concurrency=settings.concurrency,
                environment=template_environment(self.template, spec) if settings.apply_environment else None,
            )
            for logical_id, spec in self.template.functions.items()
            if logical_id in routed
        }
        self.runner = RunnerConnection(settings)

    def runner_route(self, method: str, target: str, headers: Message, body: bytes) -> HttpResponse:
        try:
            return self.runner.send(method, target, list(headers.items()), body)
        except OSError as error:
            logger.warning("could not reach the runner for %s %s: %s", method, target, error)
            return error_response(502, "runner_unavailable", "the runner did not answer; see its log")

    def import_functions(self) -> None:
        for logical_id, function in self.functions.items():
            try:
                _ = function.handler  # imported now, not on a first request
            except Exception:  # its requests will answer 500 and log why, as in the runner
                logger.exception("%s could not be imported", logical_id)

    def serve_until_stdin_closes(self) -> None:
        # Before any handler is imported: their runtimes pick the publisher on first use.
        Runtime.hosted_publisher = ForwardingPublisher(self.runner)
        self.import_functions()
        handler = make_request_handler(self, server_name=f"okyaku-local-worker-{self.settings.index}")
        server = ReusePortServer((self.settings.host, self.settings.port), handler)
        thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
        thread.start()
        print(f"READY {os.getpid()}", flush=True)
        try:
            sys.stdin.read()  # EOF: the runner stopped (or died)
        finally:
            server.shutdown()
            server.server_close()
            for function in self.functions.values():
                function.shutdown()


class WorkerProcess:
    """The runner's handle on one worker process."""

    def __init__(self, index: int, process: subprocess.Popen[str]) -> None:
        self.index = index
        self.process = process

    @classmethod
    def spawn(cls, settings: WorkerSettings) -> WorkerProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "okyaku.local.http_workers"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),  # the process's; each function's own is applied in the worker
        )
        assert process.stdin is not None
        # On stdin, not argv: the token does not show in the process list.
        process.stdin.write(json.dumps(asdict(settings)) + "\n")
        process.stdin.flush()
        return cls(settings.index, process)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_until_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self.process.stdout], [], [], max(left, 0))
            if not readable:
                raise RuntimeError(f"HTTP worker {self.index} did not start within {timeout_s:.0f} s")
            line = self.process.stdout.readline()
            if line.startswith("READY"):
                return
            if not line:  # it exited; its log (on the runner's stderr) says why
                code = self.process.wait()
                raise RuntimeError(f"HTTP worker {self.index} exited with code {code} while starting; see the log")

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):  # it is gone already
                self.process.stdin.close()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("HTTP worker %d did not stop in %.0f s; killing it", self.index, STOP_TIMEOUT_S)
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def main() -> None:
    settings = WorkerSettings(**json.loads(sys.stdin.readline()))
    logging.basicConfig(
        level=settings.log_level,
        format=f"%(levelname)s %(name)s [http worker {settings.index}]: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("mangum.http", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    HttpWorker(settings).serve_until_stdin_closes()


if __name__ == "__main__":
    main()
