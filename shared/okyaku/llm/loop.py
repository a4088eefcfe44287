"""The gateway's own event loop, on a daemon thread: one SDK client, concurrency limit and
breaker serve async callers on any loop and synchronous callers alike."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
R = TypeVar("R")


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


class GatewayLoop:
    """Started on first use; ``run`` awaits a coroutine on it from any loop, ``blocking`` from a
    thread."""

    def __init__(self) -> None:
        self._runner: _LoopThread | None = None
        self._lock = threading.Lock()

    def _thread(self) -> _LoopThread:
        with self._lock:
            if self._runner is None:
                self._runner = _LoopThread()
            return self._runner

    async def run(self, coro: Coroutine[Any, Any, R]) -> R:
        """Run ``coro`` on the gateway loop, awaiting it from whatever loop the caller is on."""
        runner = self._thread()
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if current is runner.loop:
            return await coro
        return await asyncio.wrap_future(runner.submit(coro))

    def blocking(self, coro: Coroutine[Any, Any, R]) -> R:
        runner = self._thread()
        if threading.current_thread() is runner.thread:
            coro.close()
            raise RuntimeError("gateway.sync cannot be used from the gateway's own loop")
        return runner.submit(coro).result()

    def close(self, cleanup: Coroutine[Any, Any, Any] | None = None) -> None:
        """Stop the loop (after ``cleanup`` ran on it); a later call starts a new one."""
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close(cleanup)
        elif cleanup is not None:
            cleanup.close()
