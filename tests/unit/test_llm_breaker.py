"""The circuit breaker's state machine, driven by a fake clock."""

import pytest

from okyaku.llm import CircuitBreaker, CircuitState, LLMUnavailable


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def states(breaker: CircuitBreaker) -> list[tuple[str, str]]:
    return [(t.from_state.value, t.to_state.value) for t in breaker.transitions]


def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.acquire().failure()


def test_opens_after_threshold_consecutive_failures_only():
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=30, clock=FakeClock())
    fail(breaker, 2)
    breaker.acquire().success()  # a success resets the count
    fail(breaker, 2)
    assert breaker.state is CircuitState.CLOSED
    fail(breaker)
    assert breaker.state is CircuitState.OPEN
    assert states(breaker) == [("closed", "open")]


def test_open_circuit_rejects_without_a_permit_until_reset_time():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=30, clock=clock)
    fail(breaker)
    with pytest.raises(LLMUnavailable) as raised:
        breaker.acquire()
    assert raised.value.code == "llm_circuit_open"
    assert raised.value.details["retry_in_s"] == 30.0
    with pytest.raises(LLMUnavailable):
        breaker.check()
    assert breaker.rejected_calls == 2
    clock.now += 29.9
    with pytest.raises(LLMUnavailable):
        breaker.check()


def test_half_open_lets_exactly_one_probe_through_and_its_success_closes():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=30, clock=clock)
    fail(breaker)
    clock.now += 30
    breaker.check()  # due: no error
    probe = breaker.acquire()
    assert probe.probe and breaker.state is CircuitState.HALF_OPEN
    with pytest.raises(LLMUnavailable):
        breaker.acquire()  # a second caller while the probe is out
    probe.success()
    assert breaker.state is CircuitState.CLOSED
    assert states(breaker) == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert not breaker.acquire().probe


def test_failed_probe_reopens_for_a_full_period():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=10, clock=clock)
    fail(breaker, 2)
    clock.now += 10
    breaker.acquire().failure()
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_in_s() == 10
    assert states(breaker)[-1] == ("half_open", "open")


def test_abandoned_probe_frees_the_probe_slot():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after_s=5, clock=clock)
    fail(breaker)
    clock.now += 5
    with breaker.acquire():
        pass  # cancelled: neither success nor failure
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.acquire().success()
    assert breaker.state is CircuitState.CLOSED


def test_failure_noticed_after_admission_counts():
    breaker = CircuitBreaker(failure_threshold=2, reset_after_s=5, clock=FakeClock())
    breaker.acquire().success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert breaker.snapshot()["consecutive_failures"] == 2
