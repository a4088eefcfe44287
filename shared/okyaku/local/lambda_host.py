"""Lambda, hosted locally: a function's handler file imported under a name of its own, invoked with
a Lambda ``context`` at most ``concurrency`` events at a time, seeing its own template environment.

Every function of the template runs in one process here, so their environments cannot all be
``os.environ``: each function's (Globals + its own Environment) is an overlay that its Settings
read, set around its import and around each invocation (``okyaku.config.function_environment``).
One function's LLM_TIMEOUT_S never reaches another, as on Lambda."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import Any

from okyaku.config import function_environment
from okyaku.lambda_events import LambdaContext
from okyaku.local.template import FunctionSpec, Template

logger = logging.getLogger(__name__)
_module_counter = itertools.count(1)


def load_handler_module(spec: FunctionSpec, module_name: str | None = None) -> ModuleType:
    """Import the function's handler file under a name of its own, with its folder importable."""
    path = spec.module_file
    if not path.is_file():
        raise FileNotFoundError(f"{spec.logical_id}: handler file {path} does not exist")
    name = module_name or f"okyaku_function_{spec.logical_id}"
    if name in sys.modules:  # a second load (tests, a second runner) gets a module of its own
        name = f"{name}_{next(_module_counter)}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(spec.code_dir))
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(str(spec.code_dir))
    return module


_thread_state = threading.local()


def ensure_thread_event_loop() -> None:
    """Mangum runs the ASGI app on the calling thread's event loop: each thread gets its own."""
    if getattr(_thread_state, "loop", None) is None:
        _thread_state.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_thread_state.loop)


def release_thread_event_loop() -> None:
    """Close the loop of a thread that is about to end (an HTTP connection's)."""
    loop = getattr(_thread_state, "loop", None)
    if loop is not None:
        _thread_state.loop = None
        asyncio.set_event_loop(None)
        loop.close()


class FunctionHost:
    """One function's handler, imported on first use, at most ``concurrency`` events at a time
    (each slot like a Lambda instance: one event at a time).

    ``invoke`` runs the event on the calling thread (an HTTP connection's, a queue consumer's):
    a hand-over to another thread per request cost more CPU than the smallest request itself.
    ``submit`` runs it on the host's own threads, for callers that do not wait (schedules).

    ``environment`` (see :func:`template_environment`) is what the function's Settings read under
    the process's environment, at import and in every invocation; None: the process's alone."""

    def __init__(
        self, spec: FunctionSpec, *, concurrency: int = 4, environment: Mapping[str, str] | None = None
    ) -> None:
        self.spec = spec
        self.environment = dict(environment) if environment is not None else None
        self.module: ModuleType | None = None
        self._handler: Callable[[Any, Any], Any] | None = None
        self._import_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency,
            thread_name_prefix=f"fn-{spec.logical_id}",
            initializer=ensure_thread_event_loop,
        )

    @contextlib.contextmanager
    def own_environment(self) -> Iterator[None]:
        """Settings read inside the block are this function's."""
        if self.environment is None:
            yield
            return
        with function_environment(self.environment):
            yield

    @property
    def handler(self) -> Callable[[Any, Any], Any]:
        with self._import_lock:
            if self._handler is None:
                started = time.perf_counter()
                with self.own_environment():  # module-level wiring (Runtime, gateways) reads Settings
                    module = load_handler_module(self.spec)
                handler = getattr(module, self.spec.attribute, None)
                if not callable(handler):
                    raise AttributeError(f"{self.spec.module_file} has no callable {self.spec.attribute!r}")
                self.module = module
                self._handler = handler
                logger.info(
                    "%s: imported %s in %.0f ms",
                    self.spec.logical_id,
                    self.spec.handler,
                    (time.perf_counter() - started) * 1000,
                )
            return self._handler

    def _call(self, event: Any) -> Any:
        handler = self.handler  # imported (once) before taking a slot
        ensure_thread_event_loop()
        with self._slots, self.own_environment():
            context = LambdaContext(self.spec.logical_id, self.spec.memory_mb, self.spec.timeout_s)
            try:
                return handler(event, context)
            finally:
                elapsed = time.monotonic() - context.started
                if elapsed > self.spec.timeout_s:
                    logger.warning(
                        "%s ran %.1f s, past its Timeout of %d s: Lambda would have stopped it",
                        self.spec.logical_id,
                        elapsed,
                        self.spec.timeout_s,
                    )

    def submit(self, event: Any) -> Future[Any]:
        return self._executor.submit(self._call, event)

    def invoke(self, event: Any) -> Any:
        """Run the handler with ``event`` on this thread; its result (or its error)."""
        return self._call(event)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def template_environment(template: Template, spec: FunctionSpec) -> dict[str, str]:
    """The function's environment variables that the template resolves to a value (Globals and its
    own Environment, merged by the parser).

    References to resources (a queue URL, the bus name) are left out: locally the runner's
    publisher and in-process dispatch stand for them; so are parameters left empty (the
    setting's default applies)."""
    resolved = {name: template.resolve(raw) for name, raw in spec.environment.items()}
    return {name: value for name, value in resolved.items() if value}
