"""What the predictions package scores: its model targets, the stored prediction of each, and
which function serves which."""

from __future__ import annotations

from typing import Literal

from okyaku.predictions.explain import PredictionTarget

ModelTarget = Literal["lead", "churn", "deal"]
PREDICTION_OF: dict[str, PredictionTarget] = {"lead": "lead_score", "churn": "churn_risk", "deal": "deal_forecast"}
ENTITY_OF = {"lead": "contact", "churn": "contact", "deal": "deal"}
SCORING_TARGETS: tuple[ModelTarget, ...] = ("lead", "churn")
FORECASTING_TARGETS: tuple[ModelTarget, ...] = ("deal",)


def churn_level(score: float) -> str:
    if score >= 50:
        return "high"
    return "medium" if score >= 20 else "low"
