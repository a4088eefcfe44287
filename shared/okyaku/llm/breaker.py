"""A circuit breaker: after repeated failures the LLM is not called at all for a while, so a dead
Ollama costs microseconds per request instead of a timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from okyaku.llm.errors import LLMUnavailable


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Transition:
    from_state: CircuitState
    to_state: CircuitState
    at: float


class CircuitBreaker:
    """closed → (``failure_threshold`` consecutive failures) → open → (``reset_after_s``) → half-open,
    where exactly one probe call is let through: its success closes the circuit, its failure
    reopens it. Thread-safe; the clock is injectable so tests need no sleeps."""

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = max(1, failure_threshold)
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.transitions: list[Transition] = []
        self.rejected_calls = 0

    @property
    def state(self) -> CircuitState:
        with self._lock:
            return self._state

    @property
    def consecutive_failures(self) -> int:
        with self._lock:
            return self._consecutive_failures

    def retry_in_s(self) -> float:
        """Seconds until an open circuit lets a probe through (0 when not open)."""
        with self._lock:
            if self._state is not CircuitState.OPEN:
                return 0.0
            return max(0.0, self.reset_after_s - (self._clock() - self._opened_at))

    def check(self) -> None:
        """Fail fast, without taking a permit, while the circuit is open and not yet due a probe."""
        with self._lock:
            due = self._clock() - self._opened_at >= self.reset_after_s
            if self._state is not CircuitState.OPEN or due:
                return
            self.rejected_calls += 1
            wait = self.reset_after_s - (self._clock() - self._opened_at)
        raise self._open_error(wait)

    def record_failure(self) -> None:
        """A failure noticed after a call was admitted (e.g. a stream that broke off)."""
        self._failed(probe=False)

    def acquire(self) -> Permit:
        """A permit to call the LLM, or :class:`LLMUnavailable` at once when the circuit is open."""
        with self._lock:
            if self._state is CircuitState.OPEN and self._clock() - self._opened_at >= self.reset_after_s:
                self._move(CircuitState.HALF_OPEN)
            if self._state is CircuitState.CLOSED:
                return Permit(self, probe=False)
            if self._state is CircuitState.HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return Permit(self, probe=True)
            self.rejected_calls += 1
            wait = self.reset_after_s - (self._clock() - self._opened_at)
        raise self._open_error(wait)

    def _open_error(self, wait_s: float) -> LLMUnavailable:
        return LLMUnavailable(
            "the LLM is unavailable: calls are paused after repeated failures",
            code="llm_circuit_open",
            details={"circuit": self._state.value, "retry_in_s": round(max(0.0, wait_s), 1)},
        )

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            retry = 0.0
            if self._state is CircuitState.OPEN:
                retry = max(0.0, self.reset_after_s - (self._clock() - self._opened_at))
            return {
                "state": self._state.value,
                "consecutive_failures": self._consecutive_failures,
                "failure_threshold": self.failure_threshold,
                "retry_in_s": round(retry, 1),
                "rejected_calls": self.rejected_calls,
            }

    # --- called by permits ---------------------------------------------------------------
    def _succeeded(self, probe: bool) -> None:
        with self._lock:
            self._consecutive_failures = 0
            if probe:
                self._probe_in_flight = False
            if self._state is not CircuitState.CLOSED:
                self._move(CircuitState.CLOSED)

    def _failed(self, probe: bool) -> None:
        with self._lock:
            self._consecutive_failures += 1
            if probe:
                self._probe_in_flight = False
            if self._state is CircuitState.HALF_OPEN or (
                self._state is CircuitState.CLOSED and self._consecutive_failures >= self.failure_threshold
            ):
                self._opened_at = self._clock()
                self._move(CircuitState.OPEN)

    def _abandoned(self, probe: bool) -> None:
        """A call ended with no verdict (cancelled): free the probe slot, change nothing else."""
        if probe:
            with self._lock:
                self._probe_in_flight = False

    def _move(self, state: CircuitState) -> None:
        self.transitions.append(Transition(self._state, state, self._clock()))
        self._state = state


class Permit:
    """One call's ticket: report ``success()`` or ``failure()``; leaving without either is neutral."""

    def __init__(self, breaker: CircuitBreaker, *, probe: bool) -> None:
        self._breaker = breaker
        self.probe = probe
        self._settled = False

    def success(self) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._succeeded(self.probe)

    def failure(self) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._failed(self.probe)

    def __enter__(self) -> Permit:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._settled:
            self._settled = True
            self._breaker._abandoned(self.probe)
