"""The local runner's HTTP front: a stdlib request handler that turns each request into an HTTP
API payload 2.0 event for the route's function and writes back its response; plus the runner's
own ``/_okyaku/`` routes (status, fire a schedule)."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from okyaku.lambda_events import HttpResponse, build_http_event, gateway_error, http_response_from_result
from okyaku.local.lambda_host import FunctionHost
from okyaku.local.template import Template

logger = logging.getLogger(__name__)
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway HTTP API's payload limit


class Served(Protocol):
    """What the front needs of the runner (okyaku.local.runner.LocalRunner)."""

    @property
    def template(self) -> Template: ...

    @property
    def functions(self) -> Mapping[str, FunctionHost]: ...

    def status(self) -> dict[str, Any]: ...

    def fire_schedule(self, rule_name: str) -> Any: ...


def make_request_handler(runner: Served) -> type[BaseHTTPRequestHandler]:
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
                self._send(gateway_error(413, "Request Entity Too Large"))
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
