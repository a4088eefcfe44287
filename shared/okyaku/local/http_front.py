"""The local runner's HTTP front: a stdlib request handler that turns each request into an HTTP
API payload 2.0 event for the route's function and writes back its response; plus the runner's
own ``/_okyaku/`` routes (status, fire a schedule, and the change events of its HTTP workers).

The same handler serves in the runner and in each of its HTTP worker processes
(``okyaku.local.http_workers``); a worker hands the ``/_okyaku/`` routes to the runner.

The ``/_okyaku/`` routes show dead-letter bodies and run schedules, so they need the runner's
token (printed at start: ``Authorization: Bearer <token>``), a ``Host`` that names the runner
(no DNS rebinding) and, when the browser sends one, an ``Origin`` that is the runner itself (a
web page elsewhere cannot fire them). A ``Content-Length`` that is not a non-negative number is
a 400, a body above the limit a 413, both with the error shape.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from okyaku.events.model import ChangeEvent
from okyaku.lambda_events import HttpResponse, build_http_event, gateway_error, http_response_from_result
from okyaku.local.lambda_host import FunctionHost, release_thread_event_loop
from okyaku.local.template import Template
from okyaku.validation import field_details

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API's payload limit


class Served(Protocol):
    """What the front needs of the process it serves in: the runner or one of its HTTP workers."""

    @property
    def template(self) -> Template: ...

    @property
    def functions(self) -> Mapping[str, FunctionHost]: ...

    def runner_route(self, method: str, target: str, headers: Message, body: bytes) -> HttpResponse:
        """Answer a request to the runner's own ``/_okyaku/`` routes (``target``: path and query)."""
        ...


class Runner(Protocol):
    """What the ``/_okyaku/`` routes need of the runner (okyaku.local.runner.LocalRunner)."""

    def status(self) -> dict[str, Any]: ...

    def fire_schedule(self, rule_name: str) -> Any: ...

    def publish_change_events(self, events: Sequence[ChangeEvent]) -> None: ...

    @property
    def admin_token(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True  # a connection left open does not hold up the stop


class ReusePortServer(LocalServer):
    """A listener that shares its port with the runner's other HTTP processes (SO_REUSEPORT: the
    kernel spreads new connections over them). Only with workers: alone, the runner's port must
    be its own (a second ``okyaku dev`` on it fails to start instead of taking half the traffic)."""

    allow_reuse_port = True


class BadLength(Exception):
    """The request's framing cannot be trusted: answer, then close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, code: str, message: str, details: Any = None) -> HttpResponse:
    body = json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()
    return HttpResponse(status, [("content-type", "application/json")], body)


_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def _allowed_hosts(runner: Runner) -> set[str]:
    names = {runner.host, *_LOOPBACK_NAMES} - {"", "0.0.0.0", "::"}
    return {f"{name}:{runner.port}" for name in names}


def admin_refusal(runner: Runner, headers: Any) -> HttpResponse | None:
    """Why an ``/_okyaku/`` request is refused (Host, Origin, token), or None."""
    host = (headers.get("host") or "").lower()
    allowed = _allowed_hosts(runner)
    if host not in allowed:
        return error_response(403, "forbidden", "the runner's own routes answer only to its own address")
    origin = headers.get("origin")
    if origin is not None and origin.lower().removeprefix("http://") not in allowed:
        return error_response(403, "forbidden", "cross-origin requests to the runner's own routes are refused")
    supplied = headers.get("x-okyaku-runner-token") or ""
    authorization = headers.get("authorization") or ""
    if authorization.lower().startswith("bearer "):
        supplied = supplied or authorization[7:].strip()
    if not supplied or not hmac.compare_digest(supplied.encode(), runner.admin_token.encode()):
        return error_response(
            401,
            "unauthorized",
            "the runner's own routes need its token (printed at start): Authorization: Bearer <token>",
        )
    return None


_EVENTS = TypeAdapter(list[ChangeEvent])


def answer_runner_route(runner: Runner, method: str, target: str, headers: Message, body: bytes) -> HttpResponse:
    """The runner's own routes, behind :func:`admin_refusal`: ``GET /_okyaku/status``,
    ``POST /_okyaku/schedules/<rule>/fire`` and ``POST /_okyaku/events`` (an HTTP worker's
    change events, a JSON list, put on the runner's queues before the 200)."""
    refusal = admin_refusal(runner, headers)
    if refusal is not None:
        return refusal

    def reply(status: int, value: Any) -> HttpResponse:
        body = json.dumps(value, default=str, indent=2).encode()
        return HttpResponse(status, [("content-type", "application/json")], body)

    path = urllib.parse.urlsplit(target).path
    if path == "/_okyaku/status" and method == "GET":
        return reply(200, runner.status())
    if path == "/_okyaku/events" and method == "POST":
        try:
            events = _EVENTS.validate_json(body)
        except ValidationError as error:
            message = "the body must be a JSON list of change events"
            return error_response(400, "bad_request", message, field_details(error, whole="(body)"))
        runner.publish_change_events(events)
        return reply(200, {"accepted": len(events)})
    parts = path.strip("/").split("/")
    if len(parts) == 4 and parts[1] == "schedules" and parts[3] == "fire" and method == "POST":
        rule_name = urllib.parse.unquote(parts[2])
        try:
            result = runner.fire_schedule(rule_name)
        except KeyError:
            return error_response(404, "not_found", f"no schedule rule {rule_name!r}")
        except Exception:
            logger.exception("%s failed", rule_name)  # the details go to the log, not the client
            return error_response(500, "internal_error", f"{rule_name} failed; see the runner's log")
        return reply(200, {"rule": rule_name, "result": result})
    return error_response(404, "not_found", "Not Found")


def make_request_handler(runner: Served, *, server_name: str = "okyaku-local") -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        server_version = server_name
        protocol_version = "HTTP/1.1"
        # TCP_NODELAY: a response is one write anyway (below), and no small segment may wait
        # for the client's delayed ACK (Nagle), which cost ~40 ms a request on keep-alive.
        disable_nagle_algorithm = True

        def finish(self) -> None:
            # The connection's thread ends here: the event loop its invocations ran on goes too.
            try:
                super().finish()
            finally:
                release_thread_event_loop()

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("%s " + format, self.address_string(), *args)

        def _read_body(self) -> bytes:
            """The request body; BadLength when its framing is malformed or it is too large."""
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                total = 0
                while True:
                    line = self.rfile.readline(1024)
                    size_text = line.split(b";")[0].strip()
                    if (
                        not line.endswith(b"\n")
                        or not size_text
                        or any(c not in b"0123456789abcdefABCDEF" for c in size_text)
                    ):
                        raise BadLength(400, "malformed chunk size")
                    size = int(size_text, 16)
                    if size == 0:
                        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    total += size
                    if total > MAX_BODY_BYTES:
                        raise BadLength(413, f"the body is over {MAX_BODY_BYTES} bytes")
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline(2)
                return b"".join(chunks)
            values = self.headers.get_all("content-length") or []
            if not values:
                return b""
            if len(set(values)) != 1 or not values[0].strip().isdigit():
                raise BadLength(400, "Content-Length must be one non-negative integer")
            length = int(values[0])
            if length > MAX_BODY_BYTES:
                raise BadLength(413, f"the body is over {MAX_BODY_BYTES} bytes")
            return self.rfile.read(length) if length else b""

        def _send(self, response: HttpResponse) -> None:
            # Status line, headers and body leave in one write, so that the body never waits
            # behind the headers' segment for the client's delayed ACK.
            phrase = self.responses.get(response.status, ("",))[0]
            head = [
                f"{self.protocol_version} {response.status} {phrase}",
                f"Server: {self.version_string()}",
                f"Date: {self.date_time_string()}",
            ]
            for name, value in response.headers:
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    head.append(f"{name}: {value}")
            head.append(f"content-length: {len(response.body)}")
            if self.close_connection:
                head.append("connection: close")
            self.log_request(response.status)
            payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "strict")
            self.wfile.write(payload if self.command == "HEAD" else payload + response.body)

        def _dispatch(self) -> None:
            started = time.perf_counter()
            split = urllib.parse.urlsplit(self.path)
            raw_path = split.path or "/"
            try:
                body = self._read_body()
            except BadLength as bad:
                self.close_connection = True  # where this body ends is unknown: no keep-alive
                self._send(
                    error_response(bad.status, "bad_request" if bad.status == 400 else "payload_too_large", bad.message)
                )
                return
            if raw_path.startswith("/_okyaku/"):
                self._send(runner.runner_route(self.command, self.path, self.headers, body))
                return
            # Matched on the path as sent, so that an encoded "/" (%2F) stays inside its segment.
            found = runner.template.match_route(self.command, raw_path) or runner.template.match_route(
                self.command, urllib.parse.unquote(raw_path)
            )
            if found is None:
                response = gateway_error(404, "Not Found")
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
                    response = gateway_error(500, "Internal Server Error")
            self._send(response)
            logger.info(
                "%s %s -> %d (%s, %.0f ms)",
                self.command,
                self.path,
                response.status,
                function_id,
                (time.perf_counter() - started) * 1000,
            )

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _dispatch

    return RequestHandler
