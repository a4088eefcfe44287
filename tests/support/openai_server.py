"""A scripted OpenAI-compatible HTTP server on loopback, standing in for Ollama in tests.

Real HTTP (stdlib ``ThreadingHTTPServer`` in a thread), so the gateway is exercised through the
real ``openai`` SDK. Tests queue :class:`Reply` objects (or set a ``responder``) and inject faults:
latency, HTTP 500/429, malformed JSON bodies, connections dropped before or during a response.
Every request is recorded for assertions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MODELS = ("llama3.1:latest", "nomic-embed-text:latest")


@dataclass
class Reply:
    """One scripted answer. Chat replies carry ``content``, ``chunks`` or ``tool_calls``;
    ``status``/``body``/``raw_body`` override the whole response."""

    content: str | None = None
    chunks: list[str] | None = None
    tool_calls: list[dict[str, Any]] | None = None
    status: int = 200
    body: Any = None
    raw_body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    drop: bool = False
    drop_after_chunks: int | None = None
    prompt_tokens: int = 12
    completion_tokens: int | None = None
    finish_reason: str | None = None

    @classmethod
    def text(cls, content: str, **kwargs: Any) -> Reply:
        return cls(content=content, **kwargs)

    @classmethod
    def json_object(cls, value: Any, **kwargs: Any) -> Reply:
        return cls(content=json.dumps(value), **kwargs)

    @classmethod
    def tool_call(cls, name: str, arguments: Any, **kwargs: Any) -> Reply:
        return cls(tool_calls=[{"name": name, "arguments": arguments}], **kwargs)

    @classmethod
    def stream(cls, chunks: list[str], **kwargs: Any) -> Reply:
        return cls(chunks=list(chunks), **kwargs)

    @classmethod
    def error(cls, status: int = 500, message: str = "internal error", **kwargs: Any) -> Reply:
        return cls(status=status, body={"error": {"message": message, "type": "api_error"}}, **kwargs)

    @classmethod
    def rate_limited(cls, retry_after_s: float | None = None) -> Reply:
        headers = {} if retry_after_s is None else {"Retry-After": str(retry_after_s)}
        return cls.error(429, "too many requests", headers=headers)

    @classmethod
    def malformed(cls) -> Reply:
        return cls(raw_body=b'{"id": "chatcmpl-broken", "choices": [')

    @classmethod
    def dropped(cls, delay_s: float = 0.0) -> Reply:
        return cls(drop=True, delay_s=delay_s)

    @classmethod
    def slow(cls, delay_s: float, content: str = "late") -> Reply:
        return cls(content=content, delay_s=delay_s)


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages", []))


def deterministic_embedding(text: str, dimension: int) -> list[float]:
    """A bag-of-words vector: texts sharing words get similar vectors. Deliberately not unit-length,
    so that the gateway's normalisation is observable."""
    vector = [0.0] * dimension
    words = re.findall(r"\w+", text.lower()) or [text]
    for word in words:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "big")
        rng = random.Random(seed)
        for i in range(dimension):
            vector[i] += rng.gauss(0.0, 1.0)
    return [v * 3.0 for v in vector]


def _model_matches(requested: str, available: str) -> bool:
    def full(name: str) -> str:
        return name if ":" in name else name + ":latest"

    return full(requested) == full(available)


class ScriptedOpenAIServer:
    """Start with :meth:`start` (or as a context manager); ``base_url`` ends in ``/v1``."""

    def __init__(
        self,
        *,
        models: tuple[str, ...] = DEFAULT_MODELS,
        embedding_dimension: int = 768,
        kind: str = "plain",
        context_window: int = 4096,
        ollama_version: str = "0.6.8",
        ollama_num_ctx: int | None = None,
    ) -> None:
        """``kind``: "plain" (only the OpenAI-compatible routes), "llama.cpp" (also ``/props`` with
        ``context_window`` per slot) or "ollama" (also ``/api/version``, ``/api/show``, ``/api/tags``;
        ``ollama_num_ctx`` is the model's num_ctx parameter, if any)."""
        self.models = list(models)
        self.embedding_dimension = embedding_dimension
        self.kind = kind
        self.context_window = context_window
        self.ollama_version = ollama_version
        self.ollama_num_ctx = ollama_num_ctx
        self.requests: list[RecordedRequest] = []
        self.client_disconnects = 0
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests the server was handling at once
        self.unscripted = 0
        self.fault: Reply | None = None  # applied to every request while set
        self.responder: Callable[[RecordedRequest], Reply | None] | None = None
        self._queues: dict[str, deque[Reply]] = {"chat": deque(), "embeddings": deque(), "models": deque()}
        self._lock = threading.Lock()
        self._disconnected = threading.Condition(self._lock)
        self.stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting -------------------------------------------------------------------------
    def script(self, *replies: Reply, route: str = "chat") -> None:
        with self._lock:
            self._queues[route].extend(replies)

    def pending(self, route: str = "chat") -> int:
        with self._lock:
            return len(self._queues[route])

    def requests_to(self, route: str) -> list[RecordedRequest]:
        suffix = {"chat": "/chat/completions", "embeddings": "/embeddings", "models": "/models"}[route]
        with self._lock:
            return [r for r in self.requests if r.path.endswith(suffix)]

    def wait_for_disconnects(self, count: int, timeout_s: float = 5.0) -> bool:
        with self._disconnected:
            return self._disconnected.wait_for(lambda: self.client_disconnects >= count, timeout_s)

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> ScriptedOpenAIServer:
        server = self

        class Handler(_Handler):
            scripted = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="openai-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- used by the handler ---------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _next_reply(self, route: str, request: RecordedRequest) -> Reply | None:
        if self.fault is not None:
            return self.fault
        with self._lock:
            if self._queues[route]:
                return self._queues[route].popleft()
        if self.responder is not None:
            return self.responder(request)
        return None

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _note_disconnect(self) -> None:
        with self._disconnected:
            self.client_disconnects += 1
            self._disconnected.notify_all()


class _Handler(BaseHTTPRequestHandler):
    scripted: ScriptedOpenAIServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:  # keep test output quiet
        pass

    # --- routing ---------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._begin()
        try:
            self._get()
        finally:
            self._done()

    def do_POST(self) -> None:
        self._begin()
        try:
            self._post()
        finally:
            self._done()

    # A request stops counting as in flight just before its last bytes are written: once the client
    # has them it may send the next request, before this thread gets to run again.
    def _begin(self) -> None:
        self._counted = True
        self.scripted._enter()

    def _done(self) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            self.scripted._leave()

    def _get(self) -> None:
        request = self._recorded(None)
        kind = self.scripted.kind
        if kind == "llama.cpp" and self.path == "/props":
            settings = {"n_ctx": self.scripted.context_window, "params": {"n_predict": -1}}
            self._send_json(200, {"default_generation_settings": settings, "total_slots": 2, "build_info": "b0-test"})
        elif kind == "ollama" and self.path == "/api/version":
            self._send_json(200, {"version": self.scripted.ollama_version})
        elif kind == "ollama" and self.path == "/api/tags":
            self._send_json(200, {"models": [{"name": m, "model": m} for m in self.scripted.models]})
        elif self.path.rstrip("/").endswith("/v1/models"):
            reply = self.scripted._next_reply("models", request)
            if not self._faulted(reply):
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "library"} for m in self.scripted.models]
                self._send_json(200, {"object": "list", "data": data})
        else:
            self._send_json(404, {"error": {"message": "not found", "type": "not_found"}})

    def _post(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        request = self._recorded(body)
        if self.scripted.kind == "ollama" and self.path == "/api/show":
            self._show(body or {})
        elif self.path.endswith("/chat/completions"):
            self._chat(request)
        elif self.path.endswith("/embeddings"):
            self._embeddings(request)
        else:
            self._send_json(404, {"error": {"message": "not found", "type": "not_found"}})

    def _recorded(self, body: Any) -> RecordedRequest:
        request = RecordedRequest(self.command, self.path, dict(self.headers.items()), body, time.monotonic())
        self.scripted._record(request)
        return request

    def _show(self, body: dict[str, Any]) -> None:
        model = body.get("model") or body.get("name")
        if self._model_missing(model):
            return
        num_ctx = self.scripted.ollama_num_ctx
        parameters = f"num_ctx                        {num_ctx}" if num_ctx else ""  # as Ollama pads it
        info = {"general.architecture": "llama", "llama.context_length": 131072}
        self._send_json(200, {"parameters": parameters, "model_info": info, "details": {"family": "llama"}})

    # --- faults ----------------------------------------------------------------------------
    def _client_left_while_waiting(self, delay_s: float) -> bool:
        """Wait ``delay_s`` (the server "generating"), watching the connection: True as soon as the
        client closed it (it gave up), as a real server notices and stops."""
        deadline = time.monotonic() + delay_s
        while (left := deadline - time.monotonic()) > 0:
            if self.scripted.stopping.is_set():
                return True
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable:
                try:
                    data = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    data = b""
                if not data:
                    self.scripted._note_disconnect()
                    return True
        return False

    def _faulted(self, reply: Reply | None) -> bool:
        """Apply a reply's delay and faults; True when the response has been dealt with."""
        if reply is None:
            return False
        if reply.delay_s and self._client_left_while_waiting(reply.delay_s):
            return self._drop()
        if reply.drop:
            return self._drop()
        if reply.raw_body is not None:
            self._send_bytes(reply.status, reply.raw_body, reply.headers)
            return True
        if reply.body is not None or reply.status != 200:
            self._send_json(reply.status, reply.body, reply.headers)
            return True
        return False

    def _drop(self) -> bool:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        return True

    # --- endpoints -------------------------------------------------------------------------
    def _model_missing(self, model: Any) -> bool:
        if isinstance(model, str) and any(_model_matches(model, m) for m in self.scripted.models):
            return False
        message = f'model "{model}" not found, try pulling it first'
        self._send_json(404, {"error": {"message": message, "type": "api_error"}})
        return True

    def _chat(self, request: RecordedRequest) -> None:
        body = request.body or {}
        reply = self.scripted._next_reply("chat", request)
        if self._faulted(reply) or self._model_missing(body.get("model")):
            return
        if reply is None:
            self.scripted.unscripted += 1
            self._send_json(500, {"error": {"message": "no scripted reply", "type": "test_error"}})
            return
        if body.get("stream"):
            self._stream(body, reply)
        else:
            self._send_json(200, self._completion(body, reply))

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None}
        finish = reply.finish_reason or "stop"
        if reply.tool_calls is not None:
            message["tool_calls"] = _tool_calls(reply.tool_calls)
            finish = reply.finish_reason or "tool_calls"
        else:
            message["content"] = reply.content if reply.content is not None else "".join(reply.chunks or [])
        completion_tokens = _completion_tokens(reply, message.get("content") or "")
        return {
            "id": f"chatcmpl-{len(self.scripted.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": reply.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": reply.prompt_tokens + completion_tokens,
            },
        }

    def _stream(self, body: dict[str, Any], reply: Reply) -> None:
        chunks = reply.chunks if reply.chunks is not None else _implicit_chunks(reply.content or "")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        base = {"id": "chatcmpl-stream", "object": "chat.completion.chunk", "created": 0, "model": body.get("model")}
        try:
            for i, delta in enumerate(chunks):
                if reply.drop_after_chunks is not None and i >= reply.drop_after_chunks:
                    self._drop()
                    return
                if reply.chunk_delay_s and self.scripted.stopping.wait(reply.chunk_delay_s):
                    return
                payload = {**base, "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]}
                self._write_event(payload)
            final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason or "stop"}]}
            self._write_event(final)
            if (body.get("stream_options") or {}).get("include_usage"):
                completion_tokens = _completion_tokens(reply, "".join(chunks))
                usage = {
                    "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": reply.prompt_tokens + completion_tokens,
                }
                self._write_event({**base, "choices": [], "usage": usage})
            self._done()
            self.wfile.write(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")  # the last event and the end, at once
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.scripted._note_disconnect()

    def _write_event(self, payload: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _embeddings(self, request: RecordedRequest) -> None:
        body = request.body or {}
        reply = self.scripted._next_reply("embeddings", request)
        if self._faulted(reply) or self._model_missing(body.get("model")):
            return
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        dimension = self.scripted.embedding_dimension
        data = [
            {"object": "embedding", "index": i, "embedding": deterministic_embedding(str(t), dimension)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(str(t).split()) for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        self._send_json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": usage})

    # --- plumbing --------------------------------------------------------------------------
    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(body).encode(), headers or {})

    def _send_bytes(self, status: int, data: bytes, headers: dict[str, str]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self._done()
            self.wfile.write(data)
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.scripted._note_disconnect()


def _implicit_chunks(content: str, most: int = 32) -> list[str]:
    """A whole reply streamed as at most ``most`` deltas of whole words (a 60,000-character reply
    word by word would make a test slow, not more real)."""
    words = re.findall(r"\S+\s*", content)
    size = max(1, math.ceil(len(words) / most))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _tool_calls(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, call in enumerate(calls):
        arguments = call["arguments"]
        out.append(
            {
                "id": call.get("id", f"call_{i}"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return out


def _completion_tokens(reply: Reply, text: str) -> int:
    if reply.completion_tokens is not None:
        return reply.completion_tokens
    return max(1, math.ceil(len(text.split()) * 1.3))


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
