"""Request and response bodies of the recommendations API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator


class RankingOut(BaseModel):
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
    formula: str


class CardOut(BaseModel):
    id: str
    entity_type: str
    entity_id: str
    rule: str
    type: str
    status: str
    title: str
    description: str = Field(description="What applying the card writes, in words")
    reasoning: str = Field(description="Why, in one sentence written from the facts (no LLM)")
    facts: dict[str, Any] = Field(description="The facts that triggered the card")
    action: dict[str, Any] | None = Field(description="The write that apply would propose")
    suggested_content: dict[str, Any] | None = Field(
        description="The rule's suggested content: an email's subject and body, a task's title, a note; "
        "null when the rule has none (a stage move)"
    )
    priority: int = Field(ge=1, le=5, description="1 = act today ... 5")
    confidence: float = Field(ge=0, le=1)
    expected_value: float
    ranking: RankingOut
    owner_id: str | None
    company_id: str | None
    hidden_until: str | None
    expires_at: str
    refreshed_at: str
    pending_action_id: str | None


class CardListOut(BaseModel):
    entity_type: str
    entity_id: str
    data: list[CardOut]
    generated_at: str


class PrioritiesOut(BaseModel):
    user_id: str
    data: list[CardOut]
    generated_at: str


class DraftEmailOut(BaseModel):
    subject: str
    body: str


class ExplainOut(BaseModel):
    recommendation: CardOut
    reasoning: str
    talking_points: list[str]
    draft_email: DraftEmailOut | None
    cited_facts: list[str]
    source: Literal["llm", "template"]
    citations: list[dict[str, Any]]
    degraded: bool


class PendingActionOut(BaseModel):
    id: str
    status: str
    action: str
    operation: str
    entity_type: str
    entity_id: str | None
    changes: dict[str, Any]
    auto_applied: bool
    result: dict[str, Any] | None


class ApplyOut(BaseModel):
    recommendation_id: str
    status: str = Field(description="applied (written), pending (waiting for approval), failed, ...")
    already_applied: bool
    pending_action: PendingActionOut


class FeedbackIn(BaseModel):
    feedback: Literal["helpful", "not_helpful", "done", "dismissed", "snoozed"]
    until: datetime | None = Field(default=None, description="For snoozed (required) and dismissed (optional)")
    comment: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _until_for_snooze(self) -> FeedbackIn:
        if self.feedback == "snoozed" and self.until is None:
            raise ValueError("a snooze needs 'until'")
        if self.until is not None and self.feedback not in ("snoozed", "dismissed"):
            raise ValueError("'until' applies only to snoozed and dismissed")
        if self.until is not None and self.until.tzinfo is None:
            raise ValueError("'until' needs a time zone (e.g. 2026-12-24T09:00:00Z)")
        return self


class AcceptanceRow(BaseModel):
    type: str
    cards: int
    feedback: dict[str, int]
    accepted: int
    rejected: int
    acceptance_rate: float | None


class AcceptanceOut(BaseModel):
    window_days: int
    data: list[AcceptanceRow]
