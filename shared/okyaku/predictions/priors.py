"""The transparent prior used while an organization has too little labelled history to train on.

A score is a base rate plus or minus the points of each rule that fires; every fired rule is a
factor with exactly its points, so the explanation is the whole computation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from okyaku.predictions.factors import Factor, ScoredRow, SubScore
from okyaku.predictions.tabular import GROUPS, Dataset, FloatArray, Group, display_value

Op = Literal["ge", "gt", "le", "lt", "eq"]


@dataclass(frozen=True)
class Rule:
    feature: str
    op: Op
    threshold: float
    points: float  # score points added when the rule fires (negative: taken away)
    text: str
    group: Group

    def fires(self, value: Any) -> bool:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        number = float(value)
        return {
            "ge": number >= self.threshold,
            "gt": number > self.threshold,
            "le": number <= self.threshold,
            "lt": number < self.threshold,
            "eq": number == self.threshold,
        }[self.op]


LEAD_RULES = (
    Rule("meetings_90d", "ge", 1, 12, "had a meeting in the last 90 days", "engagement"),
    Rule("calls_90d", "ge", 1, 5, "had a call in the last 90 days", "engagement"),
    Rule("emails_90d", "ge", 3, 4, "three or more emails in the last 90 days", "engagement"),
    Rule("activities_total", "eq", 0, -4, "no recorded activity", "engagement"),
    Rule("days_since_last_activity", "le", 14, 5, "touched in the last two weeks", "timing"),
    Rule("days_since_last_activity", "gt", 60, -6, "no touch for more than 60 days", "timing"),
    Rule("seniority", "ge", 3, 5, "director level or above", "fit"),
    Rule("has_company", "eq", 1, 3, "linked to a company", "fit"),
    Rule("corporate_email", "eq", 0, -3, "uses a free e-mail address", "fit"),
)

CHURN_RULES = (
    Rule("activities_90d", "eq", 0, 20, "no activity in the last 90 days", "engagement"),
    Rule("activity_trend", "lt", 0, 8, "fewer touches in the last 30 days than the 30 before", "engagement"),
    Rule("meetings_90d", "ge", 1, -6, "had a meeting in the last 90 days", "engagement"),
    Rule("days_since_last_activity", "gt", 60, 10, "no touch for more than 60 days", "timing"),
    Rule("overdue_tasks", "ge", 1, 5, "has overdue tasks", "timing"),
)

DEAL_RULES = (
    Rule("days_past_expected_close", "gt", 0, -15, "the expected close date has passed", "timing"),
    Rule("days_in_stage", "gt", 45, -8, "in the same stage for more than 45 days", "timing"),
    Rule("activities_30d", "eq", 0, -8, "no activity in the last 30 days", "engagement"),
    Rule("meetings_30d", "ge", 1, 6, "had a meeting in the last 30 days", "engagement"),
    Rule("has_contact", "eq", 0, -3, "no contact on the deal", "fit"),
)

DEFAULT_BASE_RATES = {"lead": 0.10, "churn": 0.10, "deal": 0.30}
RULES = {"lead": LEAD_RULES, "churn": CHURN_RULES, "deal": DEAL_RULES}


def shrunk_base_rate(positives: int, examples: int, default: float, weight: float = 50.0) -> float:
    """The observed rate pulled towards ``default`` by ``weight`` pseudo-examples: with little
    history (or an outcome nobody has recorded yet) the default dominates."""
    return (positives + default * weight) / (examples + weight)


@dataclass
class PriorModel:
    target: str
    base_rate: float
    rules: Sequence[Rule] = field(default_factory=tuple)
    base_feature: str | None = None  # deals start from their stage's probability
    reason: str = ""

    @classmethod
    def for_target(cls, target: str, positives: int = 0, examples: int = 0, reason: str = "") -> PriorModel:
        default = DEFAULT_BASE_RATES.get(target, 0.1)
        return cls(
            target=target,
            base_rate=shrunk_base_rate(positives, examples, default),
            rules=RULES.get(target, ()),
            base_feature="stage_probability" if target == "deal" else None,
            reason=reason,
        )

    def _base(self, dataset: Dataset) -> FloatArray:
        base = np.full(len(dataset), self.base_rate)
        if self.base_feature and self.base_feature in dataset.columns:
            for i, value in enumerate(dataset.columns[self.base_feature]):
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    base[i] = float(value)
        return base

    def predict(self, dataset: Dataset) -> FloatArray:
        return np.array([row.probability for row in self.score(dataset)])

    def score(self, dataset: Dataset, *, max_factors: int = 8) -> list[ScoredRow]:
        base = self._base(dataset)
        specs = {s.name: s for s in dataset.specs}
        rows = []
        for r, entity_id in enumerate(dataset.ids):
            fired: list[Factor] = []
            for rule in self.rules:
                values = dataset.columns.get(rule.feature)
                value = None if values is None else values[r]
                if rule.fires(value):
                    spec = specs.get(rule.feature)
                    shown = display_value(spec, value) if spec else value
                    fired.append(Factor(rule.feature, rule.text, rule.group, shown, None, float(rule.points)))
            points = sum(f.impact for f in fired)
            probability = _clip(base[r] + points / 100.0)
            sub_scores: dict[str, SubScore] = {}
            for group in GROUPS:
                group_points = sum(f.impact for f in fired if f.group == group)
                sub_scores[group] = SubScore(100.0 * _clip(base[r] + group_points / 100.0), group_points)
            fired.sort(key=lambda f: -abs(f.impact))
            rows.append(
                ScoredRow(
                    entity_id=entity_id,
                    probability=probability,
                    typical_score=round(100.0 * base[r], 1),
                    factors=fired[:max_factors],
                    sub_scores=sub_scores,
                )
            )
        return rows


def _clip(p: float) -> float:
    return min(max(p, 0.01), 0.99)
