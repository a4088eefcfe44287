"""Response contracts of the predictions API (pydantic v2)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["model", "prior"]


class FactorOut(BaseModel):
    feature: str
    label: str
    group: Literal["engagement", "fit", "timing"]
    value: Any = Field(description="This record's value")
    typical: Any = Field(description="The typical value the impact is measured against (null for rules)")
    direction: Literal["up", "down"]
    impact: float = Field(description="Score points this factor adds (negative: takes away)")
    log_odds: float | None = Field(default=None, description="Logistic models: the exact additive term")


class SubScoreOut(BaseModel):
    score: float = Field(description="0-100: a typical record with only this group's features taken from this one")
    impact: float = Field(description="Points this group adds to the score")


class ScoreOut(BaseModel):
    prediction_id: uuid.UUID
    target: Literal["lead_score", "churn_risk", "deal_forecast"]
    score: float = Field(ge=0, le=100)
    method: Method = Field(description="model: learnt from this organization's history; prior: transparent rules")
    model_version: int
    algorithm: str
    typical_score: float
    sub_scores: dict[str, SubScoreOut]
    factors: list[FactorOut]
    explanation: str
    recommendations: list[str]
    explanation_source: Literal["llm", "template"]
    degraded: bool = Field(description="true when part of the answer (the LLM's words) could not be produced")
    scored_at: datetime


class LeadScoreOut(ScoreOut):
    contact_id: uuid.UUID
    probability: float = Field(description="Calibrated probability of converting")


class ChurnRiskOut(ScoreOut):
    contact_id: uuid.UUID
    probability: float
    level: Literal["low", "medium", "high"]


class IntervalOut(BaseModel):
    p10: Any
    p90: Any


class DealForecastOut(ScoreOut):
    deal_id: uuid.UUID
    close_probability: float
    predicted_amount: float
    amount_interval: IntervalOut
    amount_source: str = Field(description="deal (its own amount), model, prior or none")
    expected_value: float
    predicted_close_date: date
    close_date_interval: IntervalOut
    close_date_source: str
    expected_close_date: date | None
    stage: str
    confidence: Literal["low", "medium", "high"]
    risk_factors: list[FactorOut]
    warnings: list[str]


class BatchItemOut(BaseModel):
    contact_id: uuid.UUID
    name: str | None
    email: str | None
    lifecycle_stage: str
    score: float
    level: str | None = None
    method: Method
    model_version: int | None
    scored_at: datetime
    sub_scores: dict[str, SubScoreOut]
    top_factors: list[FactorOut]


class BatchPageOut(BaseModel):
    target: Literal["lead_score", "churn_risk"]
    method: Method
    model_version: int
    degraded: bool
    freshly_scored: int = Field(description="Records scored by this request (never scored, or by an older model)")
    data: list[BatchItemOut]
    next_cursor: str | None


class RangeOut(BaseModel):
    expected: float
    p10: float
    p50: float
    p90: float


class MonthOut(RangeOut):
    month: str


class StageOut(RangeOut):
    stage: str
    deals: int


class PipelineForecastOut(BaseModel):
    as_of: date
    months: int
    simulations: int
    deals: int
    method: Method
    model_version: int
    degraded: bool
    total: RangeOut
    by_month: list[MonthOut]
    by_stage: list[StageOut]
    later: RangeOut
    deals_without_amount: int
    assumptions: list[str]


class HistoryItemOut(BaseModel):
    prediction_id: uuid.UUID
    target: str
    score: float
    method: Method
    model_version: int | None
    created_at: datetime
    payload: dict[str, Any]


class HistoryOut(BaseModel):
    entity_type: Literal["contact", "deal"]
    entity_id: uuid.UUID
    data: list[HistoryItemOut]


class ModelOut(BaseModel):
    """A trained model's summary: what the service returns and the API and CLI show."""

    model_config = ConfigDict(from_attributes=True)  # read from a stored PredictionModel row

    target: str
    version: int
    method: Method
    algorithm: str
    trained_at: datetime
    n_examples: int
    n_positive: int
    n_train: int
    n_test: int
    metrics: dict[str, Any]
    features: list[Any]
    excluded_features: list[Any]

    def as_dict(self) -> dict[str, Any]:
        data = self.model_dump()
        data["trained_at"] = self.trained_at.isoformat()
        return data
