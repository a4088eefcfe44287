"""The ``mcp`` function's HTTP app: ``POST /mcp`` speaks MCP's Streamable HTTP transport through the
official SDK, stateless with JSON responses (no session held between requests, so any instance
behind API Gateway or OpenFaaS answers any request), plus ``GET /mcp/health``.

Before the SDK sees a request, this layer does what is plain HTTP, with the project's error shape:
the API key (401, and a revoked key at its next request), the per-key rate limit (429 with
Retry-After), the body size (413), Accept (406) and Content-Type (415). What is protocol (a body
that is not JSON-RPC, an unknown method) the SDK answers with JSON-RPC errors, as MCP requires.

The SDK is imported at the first MCP request rather than at cold start: it costs more to import
than the rest of the function (see bench/bench_cold_start.py), and health checks, refused keys
and throttled callers do not need it.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import logging
import math
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from okyaku.errors import OkyakuError, PayloadTooLarge, RateLimited, Unauthorized
from okyaku.http import ERROR_RESPONSES, AuthorizationHeader, ErrorResponse, create_app, error_response
from okyaku.mcp.service import Caller, McpTools
from okyaku.tenancy import Principal, authenticate

logger = logging.getLogger(__name__)

PRINCIPAL_SCOPE_KEY = "okyaku.principal"
WWW_AUTHENTICATE = 'Bearer realm="okyaku", error="invalid_token"'


class RateLimiter:
    """At most ``per_minute`` requests per API key in each minute (a fixed window), per process.

    On Lambda each warm instance counts on its own, so a key spread over N instances may make up
    to N times the limit; the limit still stops one client's runaway loop, which is its job."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._windows: dict[Any, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def check(self, key: Any) -> None:
        now = self.clock()
        with self._lock:
            started, count = self._windows.get(key, (now, 0))
            if now - started >= 60.0:
                started, count = now, 0
            if count >= self.per_minute:
                retry_after = max(1, math.ceil(60.0 - (now - started)))
                raise RateLimited(
                    f"more than {self.per_minute} MCP requests in a minute with this API key",
                    retry_after_s=retry_after,
                    details={"limit_per_minute": self.per_minute, "retry_after_s": retry_after},
                )
            self._windows[key] = (started, count + 1)
            if len(self._windows) > 10_000:  # forget finished windows now and then
                self._windows = {k: v for k, v in self._windows.items() if now - v[0] < 60.0}


class McpEndpoint:
    """Builds the SDK server on first use and runs one stateless exchange per request."""

    def __init__(self, tools: McpTools) -> None:
        self.tools = tools
        self._server: Any = None
        self._lock = threading.Lock()

    def server(self) -> Any:
        with self._lock:
            if self._server is None:
                from okyaku.mcp.server import build_server, client_name

                async def caller_of(ctx: Any) -> Caller:
                    request = ctx.request
                    principal: Principal = request.scope[PRINCIPAL_SCOPE_KEY]
                    return Caller(principal, client_name(ctx, request.headers.get("user-agent")))

                self._server = build_server(self.tools, caller_of)
            return self._server

    async def exchange(self, request: Request, principal: Principal, body: bytes) -> Response:
        """One JSON-RPC message in, its JSON answer out, through the SDK's stateless transport.

        A session manager lives for one request: its task group then belongs to the event loop
        that serves the request (Mangum and the local runner give each invocation its own)."""
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        manager = StreamableHTTPSessionManager(
            self.server(), json_response=True, stateless=True, max_request_body_size=max(len(body), 1)
        )
        scope = dict(request.scope)
        scope[PRINCIPAL_SCOPE_KEY] = principal
        delivered = False

        async def receive() -> MutableMapping[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            import anyio

            await anyio.sleep_forever()  # the client stays connected until the answer is sent
            raise AssertionError("unreachable")

        status = 500
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        async with manager.run():
            await manager.handle_request(scope, receive, send)
        response = Response(content=b"".join(chunks), status_code=status)
        for name, value in headers:
            if name.lower() not in (b"content-length",):
                response.headers.append(name.decode("latin-1"), value.decode("latin-1"))
        return response


def _accepts_json(request: Request) -> bool:
    # The SDK's own rule (JSON responses need application/json, or a wildcard, in Accept).
    accepted = [part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")]
    return any(t in ("application/json", "application/*", "*/*") for t in accepted)


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "")
    return any(part.strip() == "application/json" for part in content_type.split(";")[0].split(","))


JSON_RPC_MESSAGE = {
    "type": "object",
    "description": "One JSON-RPC 2.0 message of the Model Context Protocol (initialize, tools/list, tools/call, "
    "resources/list, resources/templates/list, resources/read, ping, or a notification)",
    "required": ["jsonrpc", "method"],
    "properties": {
        "jsonrpc": {"type": "string", "enum": ["2.0"]},
        "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "method": {"type": "string"},
        "params": {"type": "object"},
    },
}
JSON_RPC_ERROR = {
    "type": "object",
    "required": ["jsonrpc", "error"],
    "properties": {
        "jsonrpc": {"type": "string"},
        "id": {},
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "integer"}, "message": {"type": "string"}, "data": {}},
        },
    },
}
_MCP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The JSON-RPC response (a tool's failure is a result with isError)",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    202: {"description": "A notification or response was accepted (no body)"},
    400: {
        "description": "Not a JSON-RPC message, or an unsupported protocol version (a JSON-RPC error)",
        "content": {"application/json": {"schema": JSON_RPC_ERROR}},
    },
    401: ERROR_RESPONSES[401],
    406: {"description": "Accept does not allow application/json", "model": ErrorResponse},
    413: {"description": "The body is too large", "model": ErrorResponse},
    415: {"description": "Content-Type is not application/json", "model": ErrorResponse},
    429: {"description": "Too many requests with this API key; see Retry-After", "model": ErrorResponse},
}


def create_mcp_app(tools: McpTools) -> FastAPI:
    app = create_app(
        "Okyaku MCP",
        tools.runtime,
        description="The CRM's tools for external agents over the Model Context Protocol (Streamable HTTP, "
        "stateless, JSON responses). Every write is a proposal in the approval queue.",
    )
    endpoint = McpEndpoint(tools)
    limiter = RateLimiter(tools.settings.rate_limit_per_minute)
    max_bytes = tools.settings.max_request_bytes
    app.state.mcp_endpoint = endpoint
    app.state.mcp_rate_limiter = limiter

    @app.post(
        "/mcp",
        tags=["mcp"],
        summary="Send one MCP message (JSON-RPC 2.0)",
        responses=_MCP_RESPONSES,
        response_class=Response,
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": JSON_RPC_MESSAGE}}}
        },
    )
    async def mcp_message(request: Request, authorization: AuthorizationHeader = None) -> Response:
        try:
            # Blocking on purpose, as okyaku.http.get_principal explains: one event per instance.
            principal = authenticate(tools.runtime.db, authorization)
        except Unauthorized as error:
            response = error_response(error)
            response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
            return response
        try:
            limiter.check(principal.api_key_id)
            if not _accepts_json(request):
                return _plain_error(406, "not_acceptable", "Accept must allow application/json")
            if not _is_json(request):
                return _plain_error(415, "unsupported_media_type", "Content-Type must be application/json")
            body = await request.body()
            if len(body) > max_bytes:
                raise PayloadTooLarge(
                    f"the body is {len(body)} bytes; the limit is {max_bytes}", details={"limit_bytes": max_bytes}
                )
        except OkyakuError as error:
            return error_response(error)
        return await endpoint.exchange(request, principal, body)

    @app.api_route(
        "/mcp",
        methods=["GET", "DELETE"],
        tags=["mcp"],
        summary="Not offered: the server is stateless (no server-initiated stream, no session to end)",
        responses={405: {"description": "Use POST", "model": ErrorResponse}},
        response_class=JSONResponse,
    )
    async def mcp_other(request: Request) -> JSONResponse:
        response = _plain_error(405, "method_not_allowed", f"{request.method} /mcp is not offered: send POST")
        response.headers["Allow"] = "POST"
        return response

    @app.get("/mcp/health", tags=["health"], summary="Liveness")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _plain_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message, "details": None}})
