"""The chat API's request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ContextType = Literal["company", "contact", "deal", "activity", "task"]


class ChatContext(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entity_type: ContextType
    entity_id: uuid.UUID


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1, max_length=2000)
    conversation_id: uuid.UUID | None = None
    context: ChatContext | None = None


class Citation(BaseModel):
    entity_type: str
    entity_id: str
    label: str


class ChatData(BaseModel):
    columns: list[str] = Field(default_factory=list)
    rows: list[list[Any]] = Field(default_factory=list)
    total: int | None = None
    totals: dict[str, Any] | None = Field(default=None, description="aggregates over all matching rows")


class ChatAction(BaseModel):
    pending_action_id: str
    action: str
    status: str
    entity_type: str
    summary: str
    changes: dict[str, Any] = Field(default_factory=dict)


class ChatResponse(BaseModel):
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    answer: str
    data: ChatData
    citations: list[Citation]
    plan: dict[str, Any] | None
    actions: list[ChatAction]
    degraded: bool
    notes: list[str]
    planner: Literal["parser", "llm"] | None = Field(
        default=None, description="who turned the question into the query or action: the built-in parser or the LLM"
    )
    phrased_by: Literal["template", "llm"] = Field(
        default="template", description="who wrote the answer's text (model text is shown only once checked)"
    )


class ChatMessageOut(BaseModel):
    id: uuid.UUID
    role: str
    content: str
    plan: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    citations: list[Any] = Field(default_factory=list)
    actions: list[Any] = Field(default_factory=list)
    notes: list[Any] = Field(default_factory=list)
    degraded: bool = False
    created_at: datetime


class ConversationSummary(BaseModel):
    id: uuid.UUID
    title: str
    message_count: int
    created_at: datetime
    updated_at: datetime


class ConversationList(BaseModel):
    conversations: list[ConversationSummary]


class ConversationOut(ConversationSummary):
    messages: list[ChatMessageOut]
