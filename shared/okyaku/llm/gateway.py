"""The LLM gateway: Ollama (or any OpenAI-compatible server) through the ``openai`` SDK, hardened.

- Per-attempt time limits (the wait for a concurrency slot included); retries with exponential
  backoff and jitter on connection errors, 5xx, 429 and malformed bodies, never on a generation
  that timed out (the SDK's own retries are off so the breaker sees every failure). A call may
  also carry a ``deadline`` that no attempt, retry or repair round runs past. Text answers are
  streamed internally, so an attempt given up closes a stream and the server stops generating.
- One circuit breaker per operation family (generation, embeddings): once open, calls fail in
  microseconds until a half-open probe succeeds; a broken embeddings endpoint never blocks chat.
- A concurrency limit (Ollama serves few requests at once); token usage counted per call.
- The server's context window learned once (``server.py``); a prompt that would not fit with
  room for its answer is not sent (``llm_context_exceeded``); an answer cut at ``max_tokens``
  is ``llm_output_truncated``, never "repaired".
- Structured output decoded against the JSON schema where the server can (llama.cpp, Ollama
  ≥ 0.5), else JSON mode with the schema in the prompt; validated against a pydantic model, with
  one repair round; tool calls validated against each tool's schema; streaming; embeddings with
  a local fallback.

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
from types import SimpleNamespace
from typing import Any, TypeVar

from okyaku.config import Settings
from okyaku.llm.breaker import CircuitBreaker
from okyaku.llm.budget import current_deadline
from okyaku.llm.config import FeatureFlags, LLMConfig
from okyaku.llm.errors import (
    LLMContextExceeded,
    LLMOutputInvalid,
    LLMOutputTruncated,
    LLMRequestRejected,
    LLMToolCallInvalid,
    LLMUnavailable,
)
from okyaku.llm.local_embedder import LocalEmbedder, get_local_embedder, is_local_model
from okyaku.llm.loop import GatewayLoop
from okyaku.llm.retry import MalformedResponse, classify_failure
from okyaku.llm.server import ServerInfo, ServerUnreachable, detect_server
from okyaku.llm.streaming import LLMStream
from okyaku.llm.structured import (
    constrained_schema,
    json_schema_note,
    parse_structured,
    repair_request,
    structured_output_note,
    tool_repair_messages,
    validate_tool_calls,
    with_system_note,
)
from okyaku.llm.tokens import estimate_messages
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

__all__ = ["FAMILY_MAX_TOKENS", "LLMGateway", "LLMStream", "SyncLLM"]

# The answer budget of an operation family when the caller gives none (capped by AI_MAX_TOKENS):
# a tool call is a name and a few arguments; prose and JSON answers get the configured budget.
FAMILY_MAX_TOKENS: dict[str, int] = {"chat": 1024, "structured": 1024, "tools": 512, "stream": 1024}
# An answer budget the gateway may shrink a default to, to fit the context; below it, refused.
MIN_ANSWER_TOKENS = 256
# How long an unreachable server is not asked again what it is (its calls fail anyway).
_PROBE_RETRY_S = 30.0


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
        threshold, reset = self.config.breaker_failure_threshold, self.config.breaker_reset_s
        # One breaker per operation family: embeddings failing (a server without --embeddings, a
        # missing model) must never pause chat, nor chat failures the local embeddings fallback.
        self.breakers = {
            "chat": CircuitBreaker(threshold, reset, clock=clock),
            "embed": CircuitBreaker(threshold, reset, clock=clock),
        }
        self.breaker = self.breakers["chat"]
        self.embedding_breaker = self.breakers["embed"]
        self.usage = UsageMeter()
        self._local_embedder = local_embedder
        self._loop = GatewayLoop()
        self._transport = Transport(self.config, self.breakers, self.usage)
        self._embedding_dimensions: dict[str, int] = {}
        self._server_info: ServerInfo | None = None
        self._server_unreachable_at: float | None = None
        self._probe_lock: asyncio.Lock | None = None
        self._http: Any = None
        self._json_schema_refused: set[str] = set()
        self.sync = SyncLLM(self)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **kwargs: Any) -> LLMGateway:
        return cls(LLMConfig.from_settings(settings), features=FeatureFlags.from_settings(settings), **kwargs)

    def close(self) -> None:
        self._loop.close(self._close())

    async def _close(self) -> None:
        self._probe_lock = None  # bound to this loop; a later call starts another
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
        await self._transport.close()

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

    # --- the server ----------------------------------------------------------------------
    async def server_info(self) -> ServerInfo | None:
        """What the server is and its context window (asked once per process); ``None`` while it
        cannot be reached."""
        return await self._on_loop(self._server())

    async def _server(self) -> ServerInfo | None:
        if self._server_info is not None:
            return self._server_info
        if self._probe_lock is None:
            self._probe_lock = asyncio.Lock()  # made on the gateway loop, its only user
        async with self._probe_lock:  # concurrent first calls ask the server once
            return await self._probe_server()

    async def _probe_server(self) -> ServerInfo | None:
        if self._server_info is not None:
            return self._server_info
        now = time.monotonic()
        if self._server_unreachable_at is not None and now - self._server_unreachable_at < _PROBE_RETRY_S:
            return None
        if self._http is None:
            import httpx

            headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
            self._http = httpx.AsyncClient(headers=headers)
        try:
            # The whole probe within one health timeout: it is paid once, by the first call.
            async with asyncio.timeout(self.config.health_timeout_s):
                info = await detect_server(
                    self._http, self.config.base_url, self.config.chat_model, self.config.num_ctx
                )
        except (ServerUnreachable, TimeoutError) as error:
            logger.info("the LLM server did not say what it is (%s)", error)
            self._server_unreachable_at = now
            return None
        self._server_info = info
        logger.info("LLM server: %s", info.as_dict())
        return info

    async def _answer_budget(
        self,
        operation: str,
        family: str,
        messages: Sequence[Message],
        max_tokens: int | None,
        tools: Sequence[dict[str, Any]] = (),
    ) -> int:
        """The answer's ``max_tokens``: the caller's, else the family's default, shrunk to the room
        the context leaves (down to ``MIN_ANSWER_TOKENS``). A prompt that with its answer exceeds the
        context is refused before sending: servers cut such a prompt silently (Ollama keeps its
        end, dropping the instructions)."""
        default = min(self.config.max_tokens, FAMILY_MAX_TOKENS.get(family, self.config.max_tokens))
        budget = max_tokens or default
        info = await self._server()
        if info is None or info.context_window is None:
            return budget
        prompt = estimate_messages(messages, tools)
        room = info.context_window - prompt
        if not max_tokens and room >= min(MIN_ANSWER_TOKENS, default):
            budget = min(budget, room)
        if prompt + budget > info.context_window:
            raise LLMContextExceeded(
                f"the prompt (about {prompt} tokens) and its answer ({budget} tokens) do not fit the "
                f"model's context window of {info.context_window} tokens",
                details={
                    "operation": operation,
                    "prompt_tokens_estimate": prompt,
                    "max_tokens": budget,
                    "context_window": info.context_window,
                    "context_source": info.context_source,
                },
            )
        return budget

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
        deadline: float | None = None,
    ) -> ChatResult:
        self.breaker.check()
        return await self._on_loop(
            self._chat(
                messages,
                model,
                temperature,
                max_tokens,
                timeout_s,
                response_format,
                operation,
                current_deadline(deadline),
            )
        )

    def _params(
        self, messages: Sequence[Message], model: str, temperature: float | None, max_tokens: int
    ) -> dict[str, Any]:
        return {
            "model": model,
            "messages": list(messages),
            "temperature": self.config.temperature if temperature is None else temperature,
            "max_tokens": max_tokens,
        }

    async def _completion(
        self, operation: str, params: dict[str, Any], timeout_s: float | None, deadline: float | None
    ) -> tuple[Any, Usage]:
        async def send(client: Any, timeout: Any) -> Any:
            if "tools" not in params:
                return await _streamed_completion(client, params, timeout)
            completion = await client.chat.completions.create(**params, timeout=timeout)
            if not getattr(completion, "choices", None):
                raise MalformedResponse("no choices in the completion")
            return completion

        completion = await self._transport.call(
            operation, params["model"], send, timeout_s=timeout_s, deadline=deadline
        )
        usage = usage_of(completion)
        self.usage.record(operation, params["model"], usage)
        choice = completion.choices[0]
        if choice.finish_reason == "length":
            raise LLMOutputTruncated(
                f"the LLM's answer was cut off at {params['max_tokens']} tokens",
                details={
                    "operation": operation,
                    "model": params["model"],
                    "max_tokens": params["max_tokens"],
                    "completion_tokens": usage.completion_tokens,
                },
            )
        return choice, usage

    async def _chat(
        self,
        messages: Sequence[Message],
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        timeout_s: float | None,
        response_format: dict[str, Any] | None,
        operation: str,
        deadline: float | None = None,
        family: str = "chat",
    ) -> ChatResult:
        budget = await self._answer_budget(operation, family, messages, max_tokens)
        params = self._params(messages, model or self.config.chat_model, temperature, budget)
        if response_format is not None:
            params["response_format"] = response_format
        choice, usage = await self._completion(operation, params, timeout_s, deadline)
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
        deadline: float | None = None,
        max_repairs: int = 1,
    ) -> StructuredResult[T]:
        """A validated ``schema`` instance. The server decodes against the JSON schema where it
        can (else JSON mode with the schema in the prompt); an answer that does not validate gets
        ``max_repairs`` repair rounds with the validation errors, then :class:`LLMOutputInvalid`
        (503). An answer cut off at ``max_tokens`` is :class:`LLMOutputTruncated` at once."""
        self.breaker.check()
        return await self._on_loop(
            self._structured(
                messages,
                schema,
                model,
                temperature,
                max_tokens,
                timeout_s,
                operation,
                current_deadline(deadline),
                max_repairs,
            )
        )

    async def _structured_mode(self, schema: type[T]) -> str:
        setting = self.config.structured_output
        if setting != "auto":
            return setting
        if schema.__name__ in self._json_schema_refused:
            return "json_object"
        info = await self._server()
        return "json_schema" if info is not None and info.json_schema else "json_object"

    async def _structured_messages(
        self, messages: Sequence[Message], schema: type[T]
    ) -> tuple[str, list[Message], dict[str, Any]]:
        """The structured mode, the messages as sent (the schema pasted only in JSON mode) and the
        ``response_format``."""
        mode = await self._structured_mode(schema)
        if mode == "json_schema":
            response_format: dict[str, Any] = {
                "type": "json_schema",
                "json_schema": {"name": schema.__name__, "schema": constrained_schema(schema), "strict": True},
            }
            return mode, with_system_note(messages, json_schema_note()), response_format
        return mode, with_system_note(messages, structured_output_note(schema)), {"type": "json_object"}

    async def _structured_prompt_tokens(self, messages: Sequence[Message], schema: type[T]) -> int:
        _, sent, _ = await self._structured_messages(messages, schema)
        return estimate_messages(sent)

    async def _structured(
        self,
        messages: Sequence[Message],
        schema: type[T],
        model: str | None,
        temperature: float | None,
        max_tokens: int | None,
        timeout_s: float | None,
        operation: str,
        deadline: float | None = None,
        max_repairs: int = 1,
    ) -> StructuredResult[T]:
        mode, conversation, response_format = await self._structured_messages(messages, schema)
        total = Usage()
        errors: list[dict[str, str]] = []
        for round_ in range(1 + max(0, max_repairs)):
            try:
                result = await self._chat(
                    conversation,
                    model,
                    temperature,
                    max_tokens,
                    timeout_s,
                    response_format,
                    operation,
                    deadline,
                    "structured",
                )
            except LLMRequestRejected as error:
                if mode != "json_schema" or isinstance(error, LLMContextExceeded) or round_:
                    raise
                # The server refused the schema (a feature its grammar lacks): JSON mode from now on.
                logger.warning("%s: the server refused the JSON schema (%s); using JSON mode", operation, error.message)
                self._json_schema_refused.add(schema.__name__)
                return await self._structured(
                    messages, schema, model, temperature, max_tokens, timeout_s, operation, deadline, max_repairs
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
            "the LLM's answer did not have the expected structure"
            + (", even after a repair attempt" if max_repairs > 0 else ""),
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
        deadline: float | None = None,
    ) -> ToolCallResult:
        """The model's text and/or tool calls, every call's arguments validated against its tool's
        schema. Invalid calls get one repair round, then :class:`LLMToolCallInvalid` (503)."""
        self.breaker.check()
        return await self._on_loop(
            self._tools(
                messages,
                tools,
                tool_choice,
                model,
                temperature,
                max_tokens,
                timeout_s,
                operation,
                current_deadline(deadline),
            )
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
        deadline: float | None = None,
    ) -> ToolCallResult:
        by_name = {tool.name: tool for tool in tools}
        definitions = [tool.openai_format() for tool in tools]
        conversation = list(messages)
        total = Usage()
        errors: list[dict[str, str]] = []
        for round_ in range(2):
            budget = await self._answer_budget(operation, "tools", conversation, max_tokens, definitions)
            params = self._params(conversation, model or self.config.chat_model, temperature, budget)
            params["tools"] = definitions
            params["tool_choice"] = tool_choice
            choice, usage = await self._completion(operation, params, timeout_s, deadline)
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
        ``aclose()``, closes the HTTP response (the server stops generating) and frees the slot."""
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
        budget = await self._answer_budget(operation, "stream", messages, max_tokens)
        params = self._params(messages, model or self.config.chat_model, temperature, budget)
        params.update(stream=True, stream_options={"include_usage": True})

        async def send(client: Any, timeout: Any) -> Any:
            return await client.chat.completions.create(**params, timeout=timeout)

        async with self._transport.slot(min(timeout_s or self.config.timeout_s, self.config.timeout_s)):
            stream = await self._transport.call(operation, params["model"], send, timeout_s=timeout_s, use_slot=False)
            usage = Usage()
            finish: str | None = None
            try:
                async for chunk in stream:
                    if getattr(chunk, "usage", None) is not None:
                        usage = usage_of(chunk)
                    for choice in chunk.choices or []:
                        if choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
                        if choice.finish_reason:
                            finish = choice.finish_reason
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
            if finish is None:
                raise LLMUnavailable("the LLM stream ended without finishing", details={"model": params["model"]})
            if finish == "length":
                raise LLMOutputTruncated(
                    f"the LLM's answer was cut off at {budget} tokens",
                    details={"operation": operation, "model": params["model"], "max_tokens": budget},
                )

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
        self.embedding_breaker.check()
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

            response = await self._transport.call("embed", model, send, family="embed")
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


async def _streamed_completion(client: Any, params: dict[str, Any], timeout: Any) -> Any:
    """A text answer asked for as a stream and put together here. Streamed, a server notices at
    its next token that the client gave up and stops generating; a non-streamed llama.cpp request
    is only checked for a closed connection when no other result arrived for a second, so with
    other requests in flight it ran on to ``max_tokens`` for nobody (measured on llama-server).
    Tool calls stay non-streamed: they are short, and servers stream their deltas differently."""
    stream = await client.chat.completions.create(
        **params, stream=True, stream_options={"include_usage": True}, timeout=timeout
    )
    parts: list[str] = []
    finish: str | None = None
    usage: Any = None
    try:
        async for chunk in stream:
            if getattr(chunk, "usage", None) is not None:
                usage = chunk.usage
            for choice in chunk.choices or []:
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
    finally:
        await stream.close()  # on any exit, cancellation included: the server stops generating
    if finish is None:
        raise MalformedResponse("the answer's stream ended without a finish reason")
    message = SimpleNamespace(content="".join(parts), tool_calls=None)
    return SimpleNamespace(choices=[SimpleNamespace(message=message, finish_reason=finish)], usage=usage)


class SyncLLM:
    """The gateway's calls for synchronous code (FastAPI ``def`` routes, queue handlers)."""

    def __init__(self, gateway: LLMGateway) -> None:
        self._gateway = gateway

    def chat(self, messages: Sequence[Message], **kwargs: Any) -> ChatResult:
        g = self._gateway
        g.breaker.check()
        return g._blocking(g._chat(messages, **_chat_args(kwargs, "chat")))

    def chat_structured(
        self, messages: Sequence[Message], schema: type[T], *, max_repairs: int = 1, **kwargs: Any
    ) -> StructuredResult[T]:
        g = self._gateway
        g.breaker.check()
        args = _chat_args(kwargs, "chat_structured")
        args.pop("response_format")
        return g._blocking(g._structured(messages, schema, **args, max_repairs=max_repairs))

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

    def server_info(self) -> ServerInfo | None:
        """What the server is and its context window; ``None`` while it cannot be reached."""
        g = self._gateway
        return g._blocking(g._server())

    def structured_prompt_tokens(self, messages: Sequence[Message], schema: type[T]) -> int:
        """The estimated prompt tokens of ``chat_structured(messages, schema)`` as it would be sent
        (with the schema pasted in JSON mode): what a caller sizing its input needs."""
        g = self._gateway
        return g._blocking(g._structured_prompt_tokens(messages, schema))


def _chat_args(kwargs: dict[str, Any], operation: str) -> dict[str, Any]:
    allowed = {"model", "temperature", "max_tokens", "timeout_s", "response_format", "operation", "deadline"}
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
        "deadline": current_deadline(kwargs.get("deadline")),  # read here: the caller's context
    }
