"""The wall clock services default to (they take a ``clock`` argument, so tests pass their own),
and the time the current invocation has left."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# A ``time.monotonic()`` value: when the invocation being handled is stopped (Lambda's Timeout).
_invocation_ends_at: ContextVar[float | None] = ContextVar("okyaku_invocation_ends_at", default=None)


def utc_now() -> datetime:
    return datetime.now(UTC)


def _ends_at(context: Any) -> float | None:
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    return time.monotonic() + remaining_ms() / 1000.0 if callable(remaining_ms) else None


@contextmanager
def invocation(context: Any) -> Iterator[None]:
    """Within: :func:`work_deadline` knows when this invocation ends, from the Lambda ``context``
    (None, or one without a clock: unknown)."""
    token = _invocation_ends_at.set(_ends_at(context))
    try:
        yield
    finally:
        _invocation_ends_at.reset(token)


def work_deadline(context: Any = None, *, margin_s: float, default_budget_s: float) -> float:
    """A ``time.monotonic()`` value by which long work should stop: ``margin_s`` before the
    invocation ends (told by ``context``, else by the :func:`invocation` being handled), or
    ``default_budget_s`` from now when that is unknown (the local runner); at least a second away."""
    now = time.monotonic()
    ends_at = _ends_at(context)
    if ends_at is None:
        ends_at = _invocation_ends_at.get()
    budget = default_budget_s if ends_at is None else ends_at - now - margin_s
    return now + max(budget, 1.0)
