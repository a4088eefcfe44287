"""What a score is made of: the factors that moved it and the engagement/fit/timing sub-scores."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Factor:
    feature: str
    label: str
    group: str
    value: Any
    typical: Any
    impact: float  # score points, signed: positive raises the score
    log_odds: float | None = None  # logistic regression: the exact additive term

    @property
    def direction(self) -> str:
        return "up" if self.impact > 0 else "down"

    def as_dict(self) -> dict[str, Any]:
        out = {
            "feature": self.feature,
            "label": self.label,
            "group": self.group,
            "value": self.value,
            "typical": self.typical,
            "direction": self.direction,
            "impact": round(self.impact, 2),
        }
        if self.log_odds is not None:
            out["log_odds"] = round(self.log_odds, 4)
        return out


@dataclass(frozen=True)
class SubScore:
    score: float  # 0-100: a typical entity with only this group's features taken from this one
    impact: float  # points this group adds to (or takes from) the score

    def as_dict(self) -> dict[str, float]:
        return {"score": round(self.score, 1), "impact": round(self.impact, 2)}


@dataclass
class ScoredRow:
    entity_id: str
    probability: float
    typical_score: float
    factors: list[Factor] = field(default_factory=list)
    sub_scores: dict[str, SubScore] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return round(100.0 * self.probability, 1)
