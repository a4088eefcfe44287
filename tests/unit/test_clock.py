"""How long long work may run: the invocation's remaining time less a margin, from the context
given or from the invocation being handled; a default budget when no clock is known."""

from __future__ import annotations

import time

from okyaku.clock import invocation, work_deadline


class Remaining:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def get_remaining_time_in_millis(self) -> int:
        return self.ms


def seconds_left(deadline: float) -> float:
    return deadline - time.monotonic()


def test_the_context_given_sets_the_deadline_less_the_margin() -> None:
    assert 79 < seconds_left(work_deadline(Remaining(100_000), margin_s=20, default_budget_s=500)) <= 80


def test_without_a_context_the_invocation_being_handled_tells() -> None:
    with invocation(Remaining(60_000)):
        assert 49 < seconds_left(work_deadline(margin_s=10, default_budget_s=500)) <= 50
        with invocation(None):  # a nested invocation without a clock: unknown again
            assert 499 < seconds_left(work_deadline(margin_s=10, default_budget_s=500)) <= 500
    assert 499 < seconds_left(work_deadline(margin_s=10, default_budget_s=500)) <= 500  # reset on exit


def test_an_invocation_nearly_out_of_time_still_gets_a_second() -> None:
    assert 0.9 < seconds_left(work_deadline(Remaining(0), margin_s=20, default_budget_s=500)) <= 1.0
