"""The ranking's pure parts: the feedback factor, urgency, priority, and the formula's terms."""

from __future__ import annotations

import pytest

from okyaku.recommendations.ranking import FeedbackCounts, feedback_factor, priority_of, rank_terms, urgency_of


def test_feedback_is_neutral_without_any_and_moves_with_it() -> None:
    assert feedback_factor(FeedbackCounts(), 2.0) == 1.0
    assert feedback_factor(FeedbackCounts(rejected=5), 2.0) == pytest.approx(2 / 9 / 0.5)
    assert feedback_factor(FeedbackCounts(accepted=5), 2.0) == pytest.approx(7 / 9 / 0.5)
    dismissals = [feedback_factor(FeedbackCounts(rejected=n), 2.0) for n in range(10)]
    assert dismissals == sorted(dismissals, reverse=True) and dismissals[-1] > 0


def test_urgency_is_capped_and_priority_follows_how_pressing_it_is() -> None:
    assert urgency_of(0) == 1 and urgency_of(-1) == 1 and urgency_of(10) == 3
    assert priority_of(1.0, 5.0) == 1
    assert priority_of(0.5, 0.0) == 5
    assert [priority_of(s, 0.5) for s in (0.2, 0.5, 0.8, 1.0)] == sorted(
        priority_of(s, 0.5) for s in (0.2, 0.5, 0.8, 1.0)
    )[::-1]


def test_the_expected_value_is_the_product_of_its_terms() -> None:
    ranking = rank_terms(
        type="schedule_call",
        value=50_000,
        value_source="deal amount",
        severity=0.75,
        score=0.4,
        score_source="stage probability",
        overdue=0.5,
        counts=FeedbackCounts(accepted=1, rejected=3, scope="user"),
        prior=2.0,
    )
    feedback = (1 + 2) / (4 + 4) / 0.5
    assert ranking.expected_value == pytest.approx(50_000 * 0.06 * 0.75 * 0.9 * 1.5 * feedback / 1.5, rel=1e-4)
    assert (ranking.feedback_accepted, ranking.feedback_rejected, ranking.feedback_scope) == (1, 3, "user")
    assert "formula" in ranking.as_dict()
