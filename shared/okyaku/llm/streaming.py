"""Streamed answers: deltas produced on the gateway's loop, consumed from any event loop
(``async for``) or thread (``for``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from okyaku.llm.breaker import CircuitBreaker
from okyaku.llm.loop import GatewayLoop

_END = object()  # marks the end of a stream across threads


class LLMStream:
    """Deltas of one streamed answer, produced on the gateway loop and consumable from any loop
    (``async for``) or thread (``for``, via ``gateway.sync.stream_chat``)."""

    def __init__(self, loop: GatewayLoop, breaker: CircuitBreaker, source: AsyncIterator[str]) -> None:
        self._loop = loop
        self._breaker = breaker
        self._source = source
        self._started = False
        self._closed = False

    def __aiter__(self) -> LLMStream:
        return self

    async def __anext__(self) -> str:
        if not self._started:
            self._started = True
            self._breaker.check()
        item = await self._loop.run(_next_or_end(self._source))
        if item is _END:
            self._closed = True
            raise StopAsyncIteration
        return str(item)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._loop.run(_aclose(self._source))

    def iterate_blocking(self) -> Iterator[str]:
        try:
            self._breaker.check()
            self._started = True
            while True:
                item = self._loop.blocking(_next_or_end(self._source))
                if item is _END:
                    self._closed = True
                    return
                yield str(item)
        finally:
            if not self._closed:
                self._closed = True
                self._loop.blocking(_aclose(self._source))

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
