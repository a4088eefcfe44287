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

The pieces: ``transport.py`` (the resilient call: client, timeouts, retries, breaker, limit),
``retry.py`` (which failures are retried, the backoff), ``structured.py`` (JSON answers and
tool calls checked and repaired), ``streaming.py``, ``loop.py`` (the gateway's event loop).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from okyaku.config import Settings
from okyaku.llm.breaker import CircuitBreaker
from okyaku.llm.config import FeatureFlags, LLMConfig
from okyaku.llm.errors import LLMOutputInvalid, LLMToolCallInvalid, LLMUnavailable
from okyaku.llm.local_embedder import LocalEmbedder, get_local_embedder, is_local_model
from okyaku.llm.loop import GatewayLoop
from okyaku.llm.retry import MalformedResponse, classify_failure
from okyaku.llm.streaming import LLMStream
from okyaku.llm.structured import (
    parse_structured,
    repair_request,
    structured_output_note,
    tool_repair_messages,
    validate_tool_calls,
    with_system_note,
)
from okyaku.llm.transport import Transport, usage_of
from okyaku.llm.types import (
    ChatResult,
    EmbeddingResult,
    Message,
    StructuredResult,
    T,
    Tool,
    ToolCallResult,
    Usage,
    assistant,
    user,
)
from okyaku.llm.usage import UsageMeter

logger = logging.getLogger(__name__)
R = TypeVar("R")

__all__ = ["LLMGateway", "LLMStream", "SyncLLM"]


def _l2_normalise(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vector))
    return [float(v) / norm for v in vector] if norm > 0 else [float(v) for v in vector]


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
        self._loop = GatewayLoop()
        self._transport = Transport(self.config, self.breaker, self.usage)
        self._embedding_dimensions: dict[str, int] = {}
        self.sync = SyncLLM(self)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> LLMGateway:
        return cls(LLMConfig.from_settings(settings), features=FeatureFlags.from_settings(settings), **kwargs)

    def close(self) -> None:
        self._loop.close(self._transport.close())

    @property
    def local_embedder(self) -> LocalEmbedder:
        if self._local_embedder is None:
            self._local_embedder = get_local_embedder()
        return self._local_embedder

    @property
    def in_flight(self) -> int:
        """Calls holding a concurrency slot right now."""
        return self._transport.busy

    async def _on_loop(self, coro: Coroutine[Any, Any, R]) -> R:
        return await self._loop.run(coro)

    def _blocking(self, coro: Coroutine[Any, Any, R]) -> R:
        return self._loop.blocking(coro)

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
                raise MalformedResponse("no choices in the completion")
            return completion

        completion = await self._transport.call(operation, params["model"], send, timeout_s=timeout_s)
        usage = usage_of(completion)
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
        conversation = with_system_note(messages, structured_output_note(schema))
        total = Usage()
        errors: list[dict[str, str]] = []
        for round_ in range(2):
            result = await self._chat(
                conversation, model, temperature, max_tokens, timeout_s, {"type": "json_object"}, operation
            )
            total += result.usage
            value, errors = parse_structured(result.content, schema)
            if value is not None:
                return StructuredResult(value=value, model=result.model, usage=total, repaired=round_ > 0)
            conversation = [
                *conversation,
                assistant(result.content),
                user(repair_request(errors)),
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
            calls, errors = validate_tool_calls(raw_calls, by_name)
            if not errors:
                return ToolCallResult(
                    content=choice.message.content,
                    tool_calls=calls,
                    model=params["model"],
                    usage=total,
                    repaired=round_ > 0,
                )
            conversation = [*conversation, *tool_repair_messages(choice.message, raw_calls, errors)]
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
        return LLMStream(self._loop, self.breaker, self._stream(messages, model, temperature, max_tokens, timeout_s))

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

        async with self._transport.slot(timeout_s or self.config.timeout_s):
            stream = await self._transport.call(operation, params["model"], send, timeout_s=timeout_s, use_slot=False)
            usage = Usage()
            finished = False
            try:
                async for chunk in stream:
                    if getattr(chunk, "usage", None) is not None:
                        usage = usage_of(chunk)
                    for choice in chunk.choices or []:
                        if choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
                        if choice.finish_reason:
                            finished = True
            except Exception as error:
                if classify_failure(error) is None:
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
                    raise MalformedResponse(f"{len(data)} embeddings for {len(batch)} inputs")
                return response

            response = await self._transport.call("embed", model, send)
            usage = usage_of(response)
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

        return await self._transport.call("list_models", "-", send, timeout_s=timeout_s, retries=0)


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
