"""The LLM gateway: Ollama (or any OpenAI-compatible server) through the ``openai`` SDK, hardened.

- Per-call timeouts; retries with exponential backoff and jitter on connection errors, timeouts,
  5xx, 429 and malformed bodies (the SDK's own retries are off so the breaker sees every failure).
- A circuit breaker: once open, calls fail in microseconds until a half-open probe succeeds.
- A concurrency limit (Ollama serves few requests at once); token usage counted per call.
- Structured output validated against a pydantic model, with one repair round; tool calls
  validated against each tool's schema; streaming; embeddings with a local fallback.

The async client lives on one background event loop owned by the gateway, so the same client,
limit and breaker serve async callers on any loop and sync callers (``gateway.sync``) alike.
``openai`` is imported only when the first call needs the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from okyaku.config import Settings
from okyaku.errors import OkyakuError
from okyaku.llm import schema_check
from okyaku.llm.breaker import CircuitBreaker, CircuitState
from okyaku.llm.config import FeatureFlags, LLMConfig
from okyaku.llm.errors import LLMOutputInvalid, LLMRequestRejected, LLMToolCallInvalid, LLMUnavailable
from okyaku.llm.local_embedder import LocalEmbedder, get_local_embedder, is_local_model
from okyaku.llm.types import (
    ChatResult,
    EmbeddingResult,
    Message,
    StructuredResult,
    T,
    Tool,
    ToolCall,
    ToolCallResult,
    Usage,
    assistant,
    user,
)
from okyaku.llm.usage import UsageMeter

logger = logging.getLogger(__name__)
R = TypeVar("R")
_END = object()  # marks the end of a stream across threads


class _MalformedResponse(Exception):
    """The server answered 200 with a body that is not a usable completion."""


@dataclass(frozen=True)
class _Failure:
    transient: bool
    reason: str
    status: int | None = None
    retry_after_s: float | None = None
    model_missing: bool = False


def _classify(error: Exception) -> _Failure | None:
    """How an exception from the SDK should be treated; ``None`` for our own bugs (re-raised)."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return _Failure(True, "the request timed out")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error.__context__
        return _Failure(True, f"connection failed ({type(cause).__name__ if cause else 'no answer'})")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = _error_message(error)
        if status == 429:
            return _Failure(True, "the server is overloaded (429)", status, _retry_after(error))
        if status >= 500:
            return _Failure(True, f"server error {status}: {message}", status)
        if status == 404:
            return _Failure(False, message, status, model_missing=True)
        return _Failure(False, f"request rejected ({status}): {message}", status)
    if isinstance(error, _MalformedResponse | ValueError | openai.APIResponseValidationError):
        return _Failure(True, f"malformed response: {error}")
    return None


def _error_message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(error, "message", error))


def _retry_after(error: Any) -> float | None:
    try:
        value = error.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, ValueError):
        return None


def _usage_of(response: Any) -> Usage:
    usage = getattr(response, "usage", None)
    if usage is None:
        return Usage()
    return Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))


def _l2_normalise(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [float(v) / norm for v in vector] if norm > 0 else [float(v) for v in vector]


def _strip_fences(text: str) -> str:
    match = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    return (match.group(1) if match else text).strip()


def _with_system_note(messages: Sequence[Message], note: str) -> list[Message]:
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0].get('content') or ''}\n\n{note}".strip()
    else:
        out.insert(0, {"role": "system", "content": note})
    return out


class _LoopThread:
    """A private event loop on a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="okyaku-llm", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, R]) -> concurrent.futures.Future[R]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self, cleanup: Coroutine[Any, Any, Any] | None = None) -> None:
        if cleanup is not None:
            try:
                self.submit(cleanup).result(timeout=5)
            except Exception:  # closing is best effort
                logger.debug("LLM client cleanup failed", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class LLMGateway:
    """One per process (per function). Async methods work from any event loop; ``sync`` offers the
    same calls for synchronous handlers."""

    def __init__(
        self,
        config: LLMConfig | None = None,
        *,
        features: FeatureFlags | None = None,
        local_embedder: LocalEmbedder | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or LLMConfig()
        self.features = features or FeatureFlags()
        self.breaker = CircuitBreaker(self.config.breaker_failure_threshold, self.config.breaker_reset_s, clock=clock)
        self.usage = UsageMeter()
        self._local_embedder = local_embedder
        self._runner: _LoopThread | None = None
        self._runner_lock = threading.Lock()
        self._client: Any = None
        self._slots: asyncio.Semaphore | None = None
        self._busy = 0
        self._embedding_dimensions: dict[str, int] = {}
        self.sync = SyncLLM(self)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> LLMGateway:
        return cls(LLMConfig.from_settings(settings), features=FeatureFlags.from_settings(settings), **kwargs)

    # --- lifecycle -----------------------------------------------------------------------
    def _loop_thread(self) -> _LoopThread:
        with self._runner_lock:
            if self._runner is None:
                self._runner = _LoopThread()
            return self._runner

    def close(self) -> None:
        with self._runner_lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close(self._close_client())

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _get_client(self) -> Any:
        """The SDK client, created on the gateway loop on first use."""
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(
                base_url=self.config.base_url,
                api_key=self.config.api_key or "ollama",
                max_retries=0,  # retries are ours, so the breaker counts every failure
                timeout=openai.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s),
            )
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
        return self._client

    @property
    def local_embedder(self) -> LocalEmbedder:
        if self._local_embedder is None:
            self._local_embedder = get_local_embedder()
        return self._local_embedder

    @property
    def in_flight(self) -> int:
        """Calls holding a concurrency slot right now."""
        return self._busy

    async def _on_loop(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the gateway loop, awaiting it from whatever loop the caller is on."""
        runner = self._loop_thread()
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is runner.loop:
            return await coro
        return await asyncio.wrap_future(runner.submit(coro))

    def _blocking(self, coro: Coroutine[Any, Any, R]) -> R:
        runner = self._loop_thread()
        if threading.current_thread() is runner.thread:
            coro.close()
            raise RuntimeError("gateway.sync cannot be used from the gateway's own loop")
        return runner.submit(coro).result()

    # --- the resilient call --------------------------------------------------------------
    @asynccontextmanager
    async def _slot(self, timeout_s: float) -> AsyncIterator[None]:
        self._get_client()
        assert self._slots is not None
        try:
            if self._slots.locked():  # only a wait needs a timeout (and the task wait_for makes)
                await asyncio.wait_for(self._slots.acquire(), timeout=timeout_s)
            else:
                await self._slots.acquire()
        except TimeoutError as error:
            raise LLMUnavailable(
                "the LLM is busy: no free slot within the timeout",
                code="llm_busy",
                details={"max_concurrency": self.config.max_concurrency},
            ) from error
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1
            self._slots.release()

    def _timeout(self, timeout_s: float | None) -> Any:
        import openai

        return openai.Timeout(timeout_s or self.config.timeout_s, connect=self.config.connect_timeout_s)

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(max(0.0, retry_after_s), self.config.backoff_max_s)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * float(2**attempt))
        return ceiling * (0.5 + random.random() / 2)  # jitter, so callers do not retry in step

    async def _call(
        self,
        operation: str,
        model: str,
        send: Callable[[Any, Any], Awaitable[R]],
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
        use_slot: bool = True,
    ) -> R:
        """``send(client, timeout)`` with retries, the breaker and (unless the caller holds one) a
        concurrency slot. Raises our typed errors only."""
        self.breaker.check()
        client = self._get_client()
        timeout = self._timeout(timeout_s)
        attempts = 1 + (self.config.max_retries if retries is None else max(0, retries))
        failure: _Failure | None = None
        tried = 0
        for attempt in range(attempts):
            if attempt:
                if self.breaker.state is CircuitState.OPEN:
                    break
                await asyncio.sleep(self._backoff_s(attempt - 1, failure.retry_after_s if failure else None))
            async with self._slot(timeout_s or self.config.timeout_s) if use_slot else _no_slot():
                with self.breaker.acquire() as permit:
                    tried += 1
                    try:
                        result = await send(client, timeout)
                    except Exception as error:
                        failure = _classify(error)
                        if failure is None:
                            raise
                        self.usage.record_failure(operation, model)
                        if not failure.transient:
                            permit.success()  # the server is up; it refused this request
                            raise self._rejection(failure, model) from error
                        permit.failure()
                        logger.warning("LLM %s attempt %d failed: %s", operation, attempt + 1, failure.reason)
                        continue
                    permit.success()
                    return result
        assert failure is not None
        raise LLMUnavailable(
            f"the LLM is unavailable: {failure.reason}",
            details={
                "operation": operation,
                "model": model,
                "attempts": tried,
                "reason": failure.reason,
                "circuit": self.breaker.state.value,
            },
        )

    def _rejection(self, failure: _Failure, model: str) -> OkyakuError:
        if failure.model_missing and model != "-":
            return LLMUnavailable(
                f"the model '{model}' is not available on the LLM server (run: ollama pull {model})",
                code="llm_model_missing",
                details={"model": model, "reason": failure.reason},
            )
        return LLMRequestRejected(
            f"the LLM server rejected the request: {failure.reason}",
            details={"model": model, "status": failure.status},
        )

    # --- chat ----------------------------------------------------------------------------
    async def chat(
        self,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout_s: float | None = None,
        response_format: dict[str, Any] | None = None,
        operation: str = "chat",
    ) -> ChatResult:
        self.breaker.check()
        return await self._on_loop(
            self._chat(messages, model, temperature, max_tokens, timeout_s, response_format, operation)
        )

    def _params(
        self, messages: Sequence[Message], model: str, temperature: float | None, max_tokens: int | None
    ) -> dict[str, Any]:
        return {
            "model": model,
            "messages": list(messages),
            "temperature": self.config.temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.config.max_tokens,
        }

    async def _completion(self, operation: str, params: dict[str, Any], timeout_s: float | None) -> tuple[Any, Usage]:
        async def send(client: Any, timeout: Any) -> Any:
            completion = await client.chat.completions.create(**params, timeout=timeout)
            if not getattr(completion, "choices", None):
                raise _MalformedResponse("no choices in the completion")
            return completion

        completion = await self._call(operation, params["model"], send, timeout_s=timeout_s)
        usage = _usage_of(completion)
        self.usage.record(operation, params["model"], usage)
        return completion.choices[0], usage

    async def _chat(
        self,
        messages: Sequence[Message],
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        timeout_s: float | None,
        response_format: dict[str, Any] | None,
        operation: str,
    ) -> ChatResult:
        params = self._params(messages, model or self.config.chat_model, temperature, max_tokens)
        if response_format is not None:
            params["response_format"] = response_format
        choice, usage = await self._completion(operation, params, timeout_s)
        return ChatResult(
            content=choice.message.content or "",
            model=params["model"],
            usage=usage,
            finish_reason=choice.finish_reason,
        )

    # --- structured output ---------------------------------------------------------------
    async def chat_structured(
        self,
        messages: Sequence[Message],
        schema: type[T],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout_s: float | None = None,
        operation: str = "chat_structured",
    ) -> StructuredResult[T]:
        """A validated ``schema`` instance. JSON mode plus the schema in the prompt (Ollama and
        llama.cpp differ on ``json_schema``); an invalid answer gets one repair round with the
        validation errors, then :class:`LLMOutputInvalid` (503)."""
        self.breaker.check()
        return await self._on_loop(
            self._structured(messages, schema, model, temperature, max_tokens, timeout_s, operation)
        )

    async def _structured(
        self,
        messages: Sequence[Message],
        schema: type[T],
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        timeout_s: float | None,
        operation: str,
    ) -> StructuredResult[T]:
        note = (
            "Answer with one JSON object and nothing else (no prose, no code fences). "
            "It must validate against this JSON schema:\n" + json.dumps(schema.model_json_schema())
        )
        conversation = _with_system_note(messages, note)
        total = Usage()
        errors: list[dict[str, str]] = []
        for round_ in range(2):
            result = await self._chat(
                conversation, model, temperature, max_tokens, timeout_s, {"type": "json_object"}, operation
            )
            total += result.usage
            value, errors = _parse_structured(result.content, schema)
            if value is not None:
                return StructuredResult(value=value, model=result.model, usage=total, repaired=round_ > 0)
            conversation = [
                *conversation,
                assistant(result.content),
                user(
                    "That answer is not valid: "
                    + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
                    + ". Reply again with only the corrected JSON object."
                ),
            ]
        raise LLMOutputInvalid(
            "the LLM's answer did not have the expected structure, even after a repair attempt",
            details=errors,
        )

    # --- tools ---------------------------------------------------------------------------
    async def chat_with_tools(
        self,
        messages: Sequence[Message],
        tools: Sequence[Tool],
        *,
        tool_choice: str | dict[str, Any] = "auto",
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout_s: float | None = None,
        operation: str = "chat_with_tools",
    ) -> ToolCallResult:
        """The model's text and/or tool calls, every call's arguments validated against its tool's
        schema. Invalid calls get one repair round, then :class:`LLMToolCallInvalid` (503)."""
        self.breaker.check()
        return await self._on_loop(
            self._tools(messages, tools, tool_choice, model, temperature, max_tokens, timeout_s, operation)
        )

    async def _tools(
        self,
        messages: Sequence[Message],
        tools: Sequence[Tool],
        tool_choice: str | dict[str, Any],
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        timeout_s: float | None,
        operation: str,
    ) -> ToolCallResult:
        by_name = {tool.name: tool for tool in tools}
        conversation = list(messages)
        total = Usage()
        errors: list[dict[str, str]] = []
        for round_ in range(2):
            params = self._params(conversation, model or self.config.chat_model, temperature, max_tokens)
            params["tools"] = [tool.openai_format() for tool in tools]
            params["tool_choice"] = tool_choice
            choice, usage = await self._completion(operation, params, timeout_s)
            total += usage
            raw_calls = list(choice.message.tool_calls or [])
            calls, errors = _validate_tool_calls(raw_calls, by_name)
            if not errors:
                return ToolCallResult(
                    content=choice.message.content,
                    tool_calls=calls,
                    model=params["model"],
                    usage=total,
                    repaired=round_ > 0,
                )
            conversation = [*conversation, *_tool_repair_messages(choice.message, raw_calls, errors)]
        raise LLMToolCallInvalid(
            "the LLM called a tool with invalid arguments, even after a repair attempt", details=errors
        )

    # --- streaming -----------------------------------------------------------------------
    def stream_chat(
        self,
        messages: Sequence[Message],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout_s: float | None = None,
    ) -> LLMStream:
        """An async iterator of text deltas (usable from any event loop). Stopping early, or
        ``aclose()``, closes the HTTP response and frees the concurrency slot."""
        return LLMStream(self, self._stream(messages, model, temperature, max_tokens, timeout_s))

    async def _stream(
        self,
        messages: Sequence[Message],
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        timeout_s: float | None,
    ) -> AsyncIterator[str]:
        operation = "stream_chat"
        params = self._params(messages, model or self.config.chat_model, temperature, max_tokens)
        params.update(stream=True, stream_options={"include_usage": True})

        async def send(client: Any, timeout: Any) -> Any:
            return await client.chat.completions.create(**params, timeout=timeout)

        async with self._slot(timeout_s or self.config.timeout_s):
            stream = await self._call(operation, params["model"], send, timeout_s=timeout_s, use_slot=False)
            usage = Usage()
            finished = False
            try:
                async for chunk in stream:
                    if getattr(chunk, "usage", None) is not None:
                        usage = _usage_of(chunk)
                    for choice in chunk.choices or []:
                        if choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
                        if choice.finish_reason:
                            finished = True
            except Exception as error:
                if _classify(error) is None:
                    raise
                self.breaker.record_failure()
                self.usage.record_failure(operation, params["model"])
                raise LLMUnavailable(
                    "the LLM stream broke off", details={"reason": str(error), "model": params["model"]}
                ) from error
            finally:
                await stream.close()
            self.usage.record(operation, params["model"], usage)
            if not finished:
                raise LLMUnavailable("the LLM stream ended without finishing", details={"model": params["model"]})

    # --- embeddings ----------------------------------------------------------------------
    async def embed(self, texts: Sequence[str], *, model: str | None = None) -> EmbeddingResult:
        """Unit-length vectors with the model name and dimension. Uses the in-process model when
        ``model`` is ``local:…`` or, with the fallback on, when Ollama cannot serve embeddings
        (then ``degraded`` is true and ``model`` names the local model)."""
        name = model or self.config.embedding_model
        if is_local_model(name):
            return await asyncio.to_thread(self._embed_locally, texts, False)
        try:
            return await self._on_loop(self._embed_remote(texts, name))
        except LLMUnavailable as error:
            if not self.config.embedding_fallback_local:
                raise
            logger.warning("embeddings fall back to the local model: %s", error.message)
            return await asyncio.to_thread(self._embed_locally, texts, True)

    def _embed_locally(self, texts: Sequence[str], degraded: bool) -> EmbeddingResult:
        embedder = self.local_embedder
        vectors = embedder.embed(list(texts))
        return EmbeddingResult(
            vectors=vectors,
            model=embedder.name,
            dimension=embedder.dimension,
            provider="local",
            degraded=degraded,
        )

    async def _embed_remote(self, texts: Sequence[str], model: str) -> EmbeddingResult:
        self.breaker.check()
        vectors: list[list[float]] = []
        total = Usage()
        size = max(1, self.config.embedding_batch_size)
        for start in range(0, len(texts), size):
            batch = list(texts[start : start + size])

            async def send(client: Any, timeout: Any, batch: list[str] = batch) -> Any:
                response = await client.embeddings.create(model=model, input=batch, timeout=timeout)
                data = sorted(getattr(response, "data", None) or [], key=lambda d: d.index)
                if len(data) != len(batch) or any(not d.embedding for d in data):
                    raise _MalformedResponse(f"{len(data)} embeddings for {len(batch)} inputs")
                return response

            response = await self._call("embed", model, send)
            usage = _usage_of(response)
            self.usage.record("embed", model, usage)
            total += usage
            vectors.extend(_l2_normalise(d.embedding) for d in sorted(response.data, key=lambda d: d.index))
        dimensions = {len(v) for v in vectors}
        if len(dimensions) > 1:
            raise LLMUnavailable("the embedding model returned vectors of different sizes", details=sorted(dimensions))
        dimension = dimensions.pop() if dimensions else self._embedding_dimensions.get(model, 0)
        if dimension:
            self._embedding_dimensions[model] = dimension
        return EmbeddingResult(vectors=vectors, model=model, dimension=dimension, provider="ollama", usage=total)

    def known_dimension(self, model: str) -> int | None:
        if is_local_model(model):
            return LocalEmbedder.dimension
        return self._embedding_dimensions.get(model)

    # --- health --------------------------------------------------------------------------
    async def list_models(self, *, timeout_s: float | None = None) -> list[str]:
        """The models the server has (``GET /v1/models``): one quick try, through the breaker."""
        self.breaker.check()
        return await self._on_loop(self._list_models(timeout_s or self.config.health_timeout_s))

    async def _list_models(self, timeout_s: float) -> list[str]:
        async def send(client: Any, timeout: Any) -> list[str]:
            page = await client.models.list(timeout=timeout)
            return [str(m.id) for m in getattr(page, "data", None) or []]

        return await self._call("list_models", "-", send, timeout_s=timeout_s, retries=0)


class LLMStream:
    """Deltas of one streamed answer, produced on the gateway loop and consumable from any loop
    (``async for``) or thread (``for``, via ``gateway.sync.stream_chat``)."""

    def __init__(self, gateway: LLMGateway, source: AsyncIterator[str]) -> None:
        self._gateway = gateway
        self._source = source
        self._started = False
        self._closed = False

    def __aiter__(self) -> LLMStream:
        return self

    async def __anext__(self) -> str:
        if not self._started:
            self._started = True
            self._gateway.breaker.check()
        item = await self._gateway._on_loop(_next_or_end(self._source))
        if item is _END:
            self._closed = True
            raise StopAsyncIteration
        return str(item)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._gateway._on_loop(_aclose(self._source))

    def iterate_blocking(self) -> Iterator[str]:
        try:
            self._gateway.breaker.check()
            self._started = True
            while True:
                item = self._gateway._blocking(_next_or_end(self._source))
                if item is _END:
                    self._closed = True
                    return
                yield str(item)
        finally:
            if not self._closed:
                self._closed = True
                self._gateway._blocking(_aclose(self._source))

    async def __aenter__(self) -> LLMStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


async def _next_or_end(source: AsyncIterator[str]) -> object:
    try:
        return await source.__anext__()
    except StopAsyncIteration:
        return _END


async def _aclose(source: AsyncIterator[str]) -> None:
    close = getattr(source, "aclose", None)
    if close is not None:
        await close()


@asynccontextmanager
async def _no_slot() -> AsyncIterator[None]:
    yield


def _parse_structured(content: str, schema: type[T]) -> tuple[T | None, list[dict[str, str]]]:
    try:
        data = json.loads(_strip_fences(content))
    except ValueError as error:
        return None, [{"field": "(answer)", "message": f"not valid JSON: {error}", "type": "json_invalid"}]
    try:
        return schema.model_validate(data), []
    except ValidationError as error:
        return None, [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())) or "(answer)",
                "message": e.get("msg", ""),
                "type": e.get("type", ""),
            }
            for e in error.errors()
        ]


def _validate_tool_calls(
    raw_calls: Sequence[Any], tools: dict[str, Tool]
) -> tuple[list[ToolCall], list[dict[str, str]]]:
    calls: list[ToolCall] = []
    errors: list[dict[str, str]] = []
    for raw in raw_calls:
        name = raw.function.name
        tool = tools.get(name)
        if tool is None:
            errors.append({"field": name, "message": f"unknown tool; known: {sorted(tools)}", "type": "unknown_tool"})
            continue
        try:
            arguments = json.loads(raw.function.arguments or "{}")
        except ValueError as error:
            errors.append({"field": name, "message": f"arguments are not valid JSON: {error}", "type": "json_invalid"})
            continue
        if not isinstance(arguments, dict):
            errors.append({"field": name, "message": "arguments must be a JSON object", "type": "type_error"})
            continue
        parsed: BaseModel | None = None
        if isinstance(tool.parameters, dict):
            problems = schema_check.validate(arguments, tool.parameters)
        else:
            try:
                parsed = tool.parameters.model_validate(arguments)
                problems = []
            except ValidationError as error:
                problems = [
                    {
                        "field": ".".join(str(p) for p in e.get("loc", ())),
                        "message": e.get("msg", ""),
                        "type": e.get("type", ""),
                    }
                    for e in error.errors()
                ]
        for problem in problems:
            errors.append({**problem, "field": f"{name}.{problem['field']}"})
        if not problems:
            calls.append(ToolCall(id=raw.id, name=name, arguments=arguments, parsed=parsed))
    return calls, errors


def _tool_repair_messages(message: Any, raw_calls: Sequence[Any], errors: list[dict[str, str]]) -> list[Message]:
    """The invalid turn as the model made it, each call answered with what was wrong."""
    turn: Message = {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in raw_calls
        ],
    }
    out: list[Message] = [turn]
    for call in raw_calls:
        mine = [
            e for e in errors if e["field"] == call.function.name or e["field"].startswith(call.function.name + ".")
        ]
        text = "; ".join(f"{e['field']}: {e['message']}" for e in mine) if mine else "not run: fix the other calls"
        out.append({"role": "tool", "tool_call_id": call.id, "content": f"error: {text}"})
    if not raw_calls:
        out.append(user("Call one of the tools, with arguments matching its schema."))
    return out


class SyncLLM:
    """The gateway's calls for synchronous code (FastAPI ``def`` routes, queue handlers)."""

    def __init__(self, gateway: LLMGateway) -> None:
        self._gateway = gateway

    def chat(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        g = self._gateway
        g.breaker.check()
        return g._blocking(g._chat(messages, **_chat_args(kwargs, "chat")))

    def chat_structured(self, messages: Sequence[Message], schema: type[T], **kwargs: Any) -> StructuredResult[T]:
        g = self._gateway
        g.breaker.check()
        args = _chat_args(kwargs, "chat_structured")
        args.pop("response_format")
        return g._blocking(g._structured(messages, schema, **args))

    def chat_with_tools(
        self,
        messages: Sequence[Message],
        tools: Sequence[Tool],
        *,
        tool_choice: str | dict[str, Any] = "auto",
        **kwargs: Any,
    ) -> ToolCallResult:
        g = self._gateway
        g.breaker.check()
        args = _chat_args(kwargs, "chat_with_tools")
        args.pop("response_format")
        return g._blocking(g._tools(messages, tools, tool_choice, **args))

    def stream_chat(self, messages: Sequence[Message], **kwargs: Any) -> Iterator[str]:
        return self._gateway.stream_chat(messages, **kwargs).iterate_blocking()

    def embed(self, texts: Sequence[str], *, model: str | None = None) -> EmbeddingResult:
        g = self._gateway
        name = model or g.config.embedding_model
        if is_local_model(name):
            return g._embed_locally(texts, False)  # CPU work in the caller's thread
        try:
            return g._blocking(g._embed_remote(texts, name))
        except LLMUnavailable as error:
            if not g.config.embedding_fallback_local:
                raise
            logger.warning("embeddings fall back to the local model: %s", error.message)
            return g._embed_locally(texts, True)

    def list_models(self, *, timeout_s: float | None = None) -> list[str]:
        g = self._gateway
        g.breaker.check()
        return g._blocking(g._list_models(timeout_s or g.config.health_timeout_s))


def _chat_args(kwargs: dict[str, Any], operation: str) -> dict[str, Any]:
    allowed = {"model", "temperature", "max_tokens", "timeout_s", "response_format", "operation"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"unexpected arguments: {sorted(unknown)}")
    return {
        "model": kwargs.get("model"),
        "temperature": kwargs.get("temperature"),
        "max_tokens": kwargs.get("max_tokens"),
        "timeout_s": kwargs.get("timeout_s"),
        "response_format": kwargs.get("response_format"),
        "operation": kwargs.get("operation", operation),
    }
