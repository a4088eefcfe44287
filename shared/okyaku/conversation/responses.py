"""HTTP bodies of the conversation API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from okyaku.conversation.schema import ConversationAnalysis, DroppedItem, RulesFindings

NOT_ANALYSED_LLM_DOWN = "not analysed yet: the language model is unavailable"
NOT_ANALYSED_PENDING = "not analysed yet: the analysis is queued"
WAITING_FOR_LLM = "not analysed yet: waiting for the language model ({reason}); it is analysed when the model is back"
NO_TEXT = "this activity has no text to analyse"
REANALYSIS_FAILED = "not analysed again: the language model is unavailable; this is the stored analysis"

# Why the model gave no analysis, by the gateway's error code: only an unreachable model is "unavailable".
_NOT_ANALYSED_BECAUSE = {
    "llm_timeout": "the language model did not answer in time",
    "llm_output_invalid": "the language model's answer did not have the expected shape",
    "llm_output_truncated": "the language model's answer was cut off",
    "llm_tool_call_invalid": "the language model's answer did not have the expected shape",
    "llm_context_exceeded": "the text does not fit the language model's context window",
    "llm_unsupported": "the language model server does not offer what the analysis needs",
    "llm_request_rejected": "the language model server refused the request",
}


def not_analysed_message(code: str, *, again: bool = False) -> str:
    """What to tell a person when the model gave no analysis, from the error's ``code``."""
    reason = _NOT_ANALYSED_BECAUSE.get(code)
    if reason is None:
        return REANALYSIS_FAILED if again else NOT_ANALYSED_LLM_DOWN
    return (
        f"not analysed again: {reason} ({code}); this is the stored analysis"
        if again
        else (f"not analysed: {reason} ({code})")
    )


class AnalyzeTextRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=100_000, description="The draft email or note")
    type: Literal["call", "meeting", "email", "note"] = "note"
    direction: Literal["inbound", "outbound"] | None = None
    subject: str | None = Field(default=None, max_length=500)
    occurred_at: datetime | None = Field(default=None, description="Relative dates resolve against it (default: now)")


class ProposalOut(BaseModel):
    id: uuid.UUID
    action: str
    status: str
    entity_type: str
    entity_id: uuid.UUID | None
    reasoning: str


class AnalysisVersionOut(BaseModel):
    analysis_version: int
    activity_version: int
    content_hash: str
    current: bool = Field(description="Made from the activity's current text")
    method: str
    model: str
    prompt: str
    schema_version: str
    trigger: str
    dropped_items: int
    proposal_ids: list[uuid.UUID]
    created_at: datetime


class StoredAnalysisOut(AnalysisVersionOut):
    analysis: ConversationAnalysis
    dropped: list[DroppedItem]


class WaitingOut(BaseModel):
    """Why the current text is not analysed yet: the model failed on it (the scheduled sweep tries again)."""

    reason: str = Field(description="The model error's code, e.g. llm_unavailable, llm_timeout, llm_output_invalid")
    message: str
    attempts: int
    since: datetime
    last_attempt_at: datetime


class ActivityAnalysisOut(BaseModel):
    activity_id: uuid.UUID
    activity_version: int
    status: Literal["analysed", "not_analysed", "waiting_for_llm", "no_text"]
    message: str | None = None
    waiting: WaitingOut | None = Field(default=None, description="Set with status waiting_for_llm")
    degraded: bool = Field(description="True when the language model is unavailable and only the rules floor speaks")
    analysis: StoredAnalysisOut | None = Field(description="The analysis of the current text; null until there is one")
    rules: RulesFindings = Field(description="The deterministic floor on the current text (method: rules)")
    history: list[AnalysisVersionOut]
    proposals: list[ProposalOut]


class TextAnalysisOut(BaseModel):
    status: Literal["analysed", "not_analysed"]
    message: str | None = None
    degraded: bool
    stored: Literal[False] = False
    analysis: ConversationAnalysis | None
    dropped: list[DroppedItem]
    rules: RulesFindings
    model: str | None = None
    prompt: str


class CompetitorIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    aliases: list[str] = Field(default_factory=list, max_length=20)


class CompetitorList(BaseModel):
    competitors: list[CompetitorIn] = Field(max_length=200)
