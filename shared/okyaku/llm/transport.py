"""The resilient call under every gateway operation: the SDK client (created on the gateway loop,
its own retries off so the breaker sees every failure), per-call timeouts, retries with backoff,
the circuit breaker, a concurrency limit (Ollama serves few requests at once) and usage counts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from okyaku.errors import OkyakuError
from okyaku.llm.breaker import CircuitBreaker, CircuitState
from okyaku.llm.config import LLMConfig
from okyaku.llm.errors import LLMRequestRejected, LLMUnavailable
from okyaku.llm.retry import Failure, backoff_s, classify_failure
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


class Transport:
    """Used only on the gateway loop."""

    def __init__(self, config: LLMConfig, breaker: CircuitBreaker, usage: UsageMeter) -> None:
        self.config = config
        self.breaker = breaker
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
            self._slots = asyncio.Semaphore(self.config.max_concurrency)
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    @asynccontextmanager
    async def slot(self, timeout_s: float) -> AsyncIterator[None]:
        self.client()
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
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self._slots.release()

    def _timeout(self, timeout_s: float | None) -> Any:
        import openai

        return openai.Timeout(timeout_s or self.config.timeout_s, connect=self.config.connect_timeout_s)

    async def call(
        self,
        operation: str,
        model: str,
        send: Send[R],
        *,
        timeout_s: float | None = None,
        retries: int | None = None,
        use_slot: bool = True,
    ) -> R:
        """``send(client, timeout)`` with retries, the breaker and (unless the caller holds one) a
        concurrency slot. Raises our typed errors only."""
        self.breaker.check()
        client = self.client()
        timeout = self._timeout(timeout_s)
        attempts = 1 + (self.config.max_retries if retries is None else max(0, retries))
        failure: Failure | None = None
        tried = 0
        for attempt in range(attempts):
            if attempt:
                if self.breaker.state is CircuitState.OPEN:
                    break
                await asyncio.sleep(
                    backoff_s(
                        attempt - 1,
                        failure.retry_after_s if failure else None,
                        base_s=self.config.backoff_base_s,
                        max_s=self.config.backoff_max_s,
                    )
                )
            async with self.slot(timeout_s or self.config.timeout_s) if use_slot else _no_slot():
                with self.breaker.acquire() as permit:
                    tried += 1
                    try:
                        result = await send(client, timeout)
                    except Exception as error:
                        failure = classify_failure(error)
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

    def _rejection(self, failure: Failure, model: str) -> OkyakuError:
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


@asynccontextmanager
async def _no_slot() -> AsyncIterator[None]:
    yield
