"""The resilient call under every gateway operation: the SDK client (created on the gateway loop,
its own retries off so the breaker sees every failure), per-attempt time limits that include the
wait for a concurrency slot, retries with backoff, one circuit breaker per operation family, and
usage counts.

An attempt that runs out of time is cancelled, which closes its HTTP connection: the model server
sees the client go and stops generating (llama.cpp and Ollama both cancel a request whose
connection closed). It is not retried: a model too slow for the budget is as slow a second time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from okyaku.errors import OkyakuError
from okyaku.llm.breaker import CircuitBreaker, CircuitState
from okyaku.llm.config import LLMConfig
from okyaku.llm.errors import (
    LLMContextExceeded,
    LLMRequestRejected,
    LLMTimeout,
    LLMUnavailable,
    LLMUnsupported,
)
from okyaku.llm.retry import Failure, FailureKind, backoff_s, classify_failure
from okyaku.llm.types import Usage
from okyaku.llm.usage import UsageMeter

logger = logging.getLogger(__name__)
R = TypeVar("R")
Send = Callable[[Any, Any], Awaitable[R]]  # (client, timeout) -> the SDK call's result


def usage_of(response: Any) -> Usage:
    usage = getattr(response, "usage", None)
    if usage is None:
        return Usage()
    return Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0))


class _SlotWaitTimedOut(Exception):
    """The attempt's time ran out before a concurrency slot was free (nothing was sent)."""


class Transport:
    """Used only on the gateway loop."""

    def __init__(self, config: LLMConfig, breakers: dict[str, CircuitBreaker], usage: UsageMeter) -> None:
        self.config = config
        self.breakers = breakers
        self.usage = usage
        self._client: Any = None
        self._slots: asyncio.Semaphore | None = None
        self.busy = 0  # calls holding a concurrency slot right now

    def client(self) -> Any:
        """The SDK client, created on first use."""
        if self._client is None:
            import openai

            self._client = openai.AsyncOpenAI(
                base_url=self.config.base_url,
                api_key=self.config.api_key or "ollama",
                max_retries=0,  # retries are ours, so the breaker counts every failure
                timeout=openai.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s),
            )
            self._slots = asyncio.Semaphore(max(1, self.config.max_concurrency))
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    @asynccontextmanager
    async def slot(self, timeout_s: float | None) -> AsyncIterator[None]:
        """A concurrency slot, waiting at most ``timeout_s`` for it (``llm_busy`` after that);
        ``None``: as long as the caller's own time limit allows."""
        self.client()
        assert self._slots is not None
        if timeout_s is None:
            await self._slots.acquire()
        else:
            try:
                async with asyncio.timeout(max(0.0, timeout_s)):
                    await self._slots.acquire()
            except TimeoutError as error:
                raise self._busy() from error
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self._slots.release()

    def _busy(self) -> LLMUnavailable:
        return LLMUnavailable(
            "the LLM is busy: no free slot within the timeout",
            code="llm_busy",
            details={"max_concurrency": self.config.max_concurrency},
        )

    def _sdk_timeout(self, seconds: float) -> Any:
        import openai

        return openai.Timeout(seconds, connect=min(self.config.connect_timeout_s, seconds))

    async def call(
        self,
        operation: str,
        model: str,
        send: Send[R],
        *,
        family: str = "chat",
        timeout_s: float | None = None,
        retries: int | None = None,
        use_slot: bool = True,
        deadline: float | None = None,
    ) -> R:
        """``send(client, timeout)`` with retries, the ``family``'s breaker and (unless the caller
        holds one) a concurrency slot. Each attempt, slot wait included, gets at most ``timeout_s``
        and never runs past ``deadline`` (a ``time.monotonic()`` value). Raises our typed errors only."""
        breaker = self.breakers[family]
        breaker.check()
        client = self.client()
        # A caller may shorten an attempt, never lengthen it: LLM_TIMEOUT_S is what budgets count.
        per_attempt = min(timeout_s, self.config.timeout_s) if timeout_s else self.config.timeout_s
        attempts = 1 + (self.config.max_retries if retries is None else max(0, retries))
        failure: Failure | None = None
        tried = 0
        for attempt in range(attempts):
            if attempt:
                if breaker.state is CircuitState.OPEN:
                    break
                wait = backoff_s(
                    attempt - 1,
                    failure.retry_after_s if failure else None,
                    base_s=self.config.backoff_base_s,
                    max_s=self.config.backoff_max_s,
                )
                if deadline is not None and time.monotonic() + wait >= deadline:
                    break  # no time left for another attempt: report the last failure
                await asyncio.sleep(wait)
            limit = per_attempt if deadline is None else min(per_attempt, deadline - time.monotonic())
            if limit <= 0:
                raise self._out_of_time(operation, model, 0.0, tried)
            sending = False
            started = time.monotonic()
            try:
                async with asyncio.timeout(limit):
                    async with self._maybe_slot(use_slot):
                        with breaker.acquire() as permit:
                            tried += 1
                            sending = True
                            try:
                                result = await send(client, self._sdk_timeout(limit - (time.monotonic() - started)))
                            except Exception as error:
                                failure = classify_failure(error)
                                if failure is None:
                                    raise
                                self.usage.record_failure(operation, model)
                                if failure.counts_against_breaker:
                                    permit.failure()
                                else:
                                    permit.success()  # the server is up; it refused or cannot do this
                                if failure.kind is FailureKind.TIMEOUT:
                                    raise self._out_of_time(operation, model, limit, tried) from error
                                if not failure.transient:
                                    raise self._rejection(failure, model, operation) from error
                                logger.warning("LLM %s attempt %d failed: %s", operation, attempt + 1, failure.reason)
                                continue
                            permit.success()
                            return result
            except TimeoutError as error:
                # asyncio.timeout cancelled the attempt: while queueing (nothing sent) or while the
                # server generated (the cancelled request closed its connection).
                if not sending:
                    raise self._busy() from error
                breaker.record_failure()
                self.usage.record_failure(operation, model)
                raise self._out_of_time(operation, model, limit, tried) from error
        assert failure is not None
        raise LLMUnavailable(
            f"the LLM is unavailable: {failure.reason}",
            details={
                "operation": operation,
                "model": model,
                "attempts": tried,
                "reason": failure.reason,
                "circuit": breaker.state.value,
            },
        )

    def _maybe_slot(self, use_slot: bool) -> Any:
        return self.slot(None) if use_slot else _no_slot()

    def _out_of_time(self, operation: str, model: str, limit_s: float, attempts: int) -> LLMTimeout:
        return LLMTimeout(
            f"the LLM timed out: no answer within {limit_s:.1f} s (the request was cancelled)",
            details={"operation": operation, "model": model, "timeout_s": round(limit_s, 1), "attempts": attempts},
        )

    def _rejection(self, failure: Failure, model: str, operation: str) -> OkyakuError:
        if failure.kind is FailureKind.MODEL_MISSING and model != "-":
            return LLMUnavailable(
                f"the model '{model}' is not available on the LLM server (run: ollama pull {model})",
                code="llm_model_missing",
                details={"model": model, "reason": failure.reason},
            )
        if failure.kind is FailureKind.UNSUPPORTED:
            return LLMUnsupported(
                f"the LLM server does not support {operation}: {failure.reason}",
                details={"operation": operation, "model": model, "status": failure.status},
            )
        if failure.kind is FailureKind.CONTEXT:
            return LLMContextExceeded(
                f"the prompt does not fit the model's context window: {failure.reason}",
                details={"operation": operation, "model": model, "status": failure.status},
            )
        return LLMRequestRejected(
            f"the LLM server rejected the request: {failure.reason}",
            details={"model": model, "status": failure.status},
        )


@asynccontextmanager
async def _no_slot() -> AsyncIterator[None]:
    yield
