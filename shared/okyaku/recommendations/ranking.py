"""The ranking: an explicit expected-value formula, returned with every card as its terms.

    expected_value = value x uplift[type] x severity x (0.5 + score) x urgency x feedback
                     / (1 + effort_hours[type])

- ``value``: what is at stake, in the organization's currency: the deal's amount; for a lead,
  the organization's typical deal (median won amount, else median amount, else a labelled
  default); for a customer, the won deals on record.
- ``uplift[type]``: the assumed rise in the chance of the good outcome (win, conversion,
  retention) from doing this kind of action at all; a constant per type, below.
- ``severity`` (0, 1]: how far past its threshold the rule's fact is (0.5 at the threshold, 1 at
  twice it). ``value x uplift x severity`` is "deal amount x probability uplift".
- ``score`` [0, 1]: the model's number in play: the deal's forecast (else its stage's
  probability), the lead score, the churn risk. ``0.5 + score`` weighs it between 0.5 and 1.5.
- ``urgency`` [1, 3]: ``1 + min(overdue, 2)``, ``overdue`` being the ratio beyond the threshold.
- ``feedback`` (0, 2): how this user (or, without one, the organization) received cards of this
  type over the last ``feedback_window_days``: ``((accepted + k) / (accepted + rejected + 2k)) / 0.5``
  with ``k = feedback_prior`` (a Beta(k, k) prior): 1 without feedback, 0.44 after five
  dismissals, 1.56 after five acceptances. Accepted: helpful, done, applied; rejected:
  not_helpful, dismissed; a snooze counts for neither.
- ``effort_hours[type]``: a rough cost of doing it; cheap actions win ties with dear ones.

``priority`` (1 = act today ... 5) says how pressing a card is regardless of money:
``5 - min(4, floor(5 x severity x urgency / 3))``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from okyaku.recommendations.rules import Candidate

FORMULA = (
    "expected_value = value x uplift[type] x severity x (0.5 + score) x urgency x feedback / (1 + effort_hours[type])"
)
BASE_UPLIFT: dict[str, float] = {
    "send_proposal": 0.10,  # a deal cannot close without one
    "schedule_call": 0.06,  # a conversation moves a deal more than anything written
    "follow_up": 0.05,
    "send_email": 0.04,
    "create_task": 0.04,  # a hot lead with nobody on it: someone will now act
    "update_deal_stage": 0.03,  # mostly a cleaner forecast, some momentum
    "re_engage": 0.03,  # long odds on a quiet contact
    "add_note": 0.01,
}
EFFORT_HOURS: dict[str, float] = {
    "send_proposal": 1.0,
    "schedule_call": 0.5,
    "follow_up": 0.3,
    "send_email": 0.25,
    "re_engage": 0.25,
    "create_task": 0.1,
    "update_deal_stage": 0.1,
    "add_note": 0.1,
}
URGENCY_CAP = 2.0
ACCEPTED = ("helpful", "done", "applied")
REJECTED = ("not_helpful", "dismissed")


@dataclass(frozen=True)
class FeedbackCounts:
    accepted: int = 0
    rejected: int = 0
    scope: str = "none"  # user | organization | none


@dataclass(frozen=True)
class Ranking:
    expected_value: float
    value: float
    value_source: str
    uplift: float
    severity: float
    score: float
    score_source: str
    urgency: float
    effort_hours: float
    feedback: float
    feedback_accepted: int
    feedback_rejected: int
    feedback_scope: str

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "formula": FORMULA}


def feedback_factor(counts: FeedbackCounts, prior: float) -> float:
    return ((counts.accepted + prior) / (counts.accepted + counts.rejected + 2 * prior)) / 0.5


def urgency_of(overdue: float) -> float:
    return 1.0 + min(max(overdue, 0.0), URGENCY_CAP)


def expected_value(
    *, value: float, uplift: float, severity: float, score: float, urgency: float, feedback: float, effort_hours: float
) -> float:
    return value * uplift * severity * (0.5 + score) * urgency * feedback / (1.0 + effort_hours)


def rank_terms(
    *,
    type: str,
    value: float,
    value_source: str,
    severity: float,
    score: float,
    score_source: str,
    overdue: float,
    counts: FeedbackCounts,
    prior: float,
) -> Ranking:
    uplift, effort = BASE_UPLIFT[type], EFFORT_HOURS[type]
    urgency = urgency_of(overdue)
    feedback = feedback_factor(counts, prior)
    score = min(max(score, 0.0), 1.0)
    return Ranking(
        expected_value=round(
            expected_value(
                value=value,
                uplift=uplift,
                severity=severity,
                score=score,
                urgency=urgency,
                feedback=feedback,
                effort_hours=effort,
            ),
            4,
        ),
        value=round(value, 2),
        value_source=value_source,
        uplift=uplift,
        severity=round(severity, 4),
        score=round(score, 4),
        score_source=score_source,
        urgency=round(urgency, 4),
        effort_hours=effort,
        feedback=round(feedback, 4),
        feedback_accepted=counts.accepted,
        feedback_rejected=counts.rejected,
        feedback_scope=counts.scope,
    )


def rank_candidate(candidate: Candidate, counts: FeedbackCounts, prior: float) -> Ranking:
    return rank_terms(
        type=candidate.type,
        value=candidate.value,
        value_source=candidate.value_source,
        severity=candidate.severity,
        score=candidate.score,
        score_source=candidate.score_source,
        overdue=candidate.overdue,
        counts=counts,
        prior=prior,
    )


def with_feedback(ranking: dict[str, Any], counts: FeedbackCounts, prior: float, type: str) -> Ranking:
    """A stored card's terms re-ranked with the reader's feedback (everything else as stored)."""
    return rank_terms(
        type=type,
        value=float(ranking["value"]),
        value_source=str(ranking["value_source"]),
        severity=float(ranking["severity"]),
        score=float(ranking["score"]),
        score_source=str(ranking["score_source"]),
        overdue=float(ranking["urgency"]) - 1.0,
        counts=counts,
        prior=prior,
    )


def priority_of(severity: float, overdue: float) -> int:
    pressing = severity * urgency_of(overdue) / (1.0 + URGENCY_CAP)
    return 5 - min(4, math.floor(5 * pressing))
