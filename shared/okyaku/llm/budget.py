"""How long LLM work may take, worst case, computed from the gateway's configuration, so that a
test can hold every function's invocations under its ``Timeout`` (HTTP functions: 29 s, the API
gateway's limit) instead of a comment claiming they fit.

One gateway operation (``operation_worst_case_s``):
    rounds x (attempts x LLM_TIMEOUT_S + retries x LLM_BACKOFF_MAX_S)
where ``attempts = 1 + LLM_MAX_RETRIES`` and ``rounds`` is 2 for structured output and tool calls
(one repair round), 1 otherwise. The wait for a concurrency slot (LLM_MAX_CONCURRENCY) is inside
each attempt's LLM_TIMEOUT_S; a generation that times out is not retried, but a 5xx may come just
before the timeout, so every attempt counts in full. The first call of a process also asks the
server what it is (context window, JSON-schema support), within LLM_HEALTH_TIMEOUT_S.

A caller's ``timeout_s`` only shortens an attempt (never beyond LLM_TIMEOUT_S), and a ``deadline``
(or an enclosing :func:`llm_deadline`) cuts retries and repair rounds short: both keep these
numbers upper bounds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from okyaku.llm.config import LLMConfig

Family = Literal["chat", "stream", "structured", "tools", "embed"]

ROUNDS: dict[str, int] = {"chat": 1, "stream": 1, "structured": 2, "tools": 2, "embed": 1}

# HTTP API (API Gateway) ends an integration after 30 s; the template's HTTP functions time out at 29.
HTTP_LIMIT_S = 29.0

_deadline: ContextVar[float | None] = ContextVar("okyaku_llm_deadline", default=None)


def attempts(config: LLMConfig) -> int:
    return 1 + max(0, config.max_retries)


def operation_worst_case_s(config: LLMConfig, family: Family, *, rounds: int | None = None) -> float:
    """The longest one gateway operation of ``family`` can take (after the process's first call)."""
    n = ROUNDS[family] if rounds is None else rounds
    retries = attempts(config) - 1
    return n * (attempts(config) * config.timeout_s + retries * config.backoff_max_s)


def first_call_overhead_s(config: LLMConfig) -> float:
    """Asking the server what it is: once per process, paid by its first call."""
    return config.health_timeout_s


@dataclass(frozen=True)
class Call:
    """``count`` gateway operations of one family (``rounds`` overrides the family's)."""

    family: Family
    count: int = 1
    rounds: int | None = None


def invocation_worst_case_s(config: LLMConfig, calls: Sequence[Call]) -> float:
    """The longest the LLM part of one invocation making ``calls`` can take, cold start included."""
    return first_call_overhead_s(config) + sum(
        c.count * operation_worst_case_s(config, c.family, rounds=c.rounds) for c in calls
    )


def fits(config: LLMConfig, calls: Sequence[Call], limit_s: float, *, margin_s: float = 0.0) -> bool:
    return invocation_worst_case_s(config, calls) + margin_s <= limit_s


def config_from_environment(environment: Mapping[str, object]) -> LLMConfig:
    """The gateway configuration a function gets from ``environment`` (the template's variables)
    alone: every setting it does not name keeps its default, whatever this process's environment."""
    from okyaku.config import Settings

    values: dict[str, object] = {name: field.default for name, field in Settings.model_fields.items()}
    for key, value in environment.items():
        if key.lower() in values and isinstance(value, str | int | float):
            values[key.lower()] = value
    return LLMConfig.from_settings(Settings.model_validate(values))


# --- deadlines -----------------------------------------------------------------------------------


@contextmanager
def llm_deadline(seconds: float) -> Iterator[float]:
    """Every LLM call made inside (in this thread or task) ends by ``seconds`` from now: attempts
    are cut short, no retry or repair round starts after it. Nested deadlines keep the earlier."""
    deadline = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield deadline
    finally:
        _deadline.reset(token)


# Kept back from the invocation's end (Lambda's Timeout) for what follows the model's answer.
INVOCATION_MARGIN_S = 2.0


def current_deadline(explicit: float | None = None) -> float | None:
    """The earliest of ``explicit``, the enclosing :func:`llm_deadline`'s and, inside an invocation
    whose end is known (``okyaku.clock.invocation``), that end less a margin: a model call never
    outlives the function that waits for it (a monotonic time; ``None``: unbounded)."""
    from okyaku.clock import work_deadline

    ends = work_deadline(margin_s=INVOCATION_MARGIN_S, default_budget_s=math.inf)
    candidates = [d for d in (explicit, _deadline.get(), None if math.isinf(ends) else ends) if d is not None]
    return min(candidates) if candidates else None
