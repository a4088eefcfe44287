"""Request and response contracts of the agents API (pydantic v2)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from okyaku.agents.policy import ApprovalPolicy, RefusalRule

ExecutionStatus = Literal["queued", "running", "completed", "stopped", "failed"]
ActionStatus = Literal["pending", "approved", "rejected", "expired", "failed", "withdrawn"]
MAX_CONTEXT_CHARS = 20_000


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str | None = Field(
        default=None, min_length=1, max_length=4000, description="What to do; each agent has a default"
    )
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="The records to work on (lead_qualifier: contact_id; deal_assistant: deal_id) and any notes",
    )

    @field_validator("context")
    @classmethod
    def _bounded(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, default=str)) > MAX_CONTEXT_CHARS:
            raise ValueError(f"context must be at most {MAX_CONTEXT_CHARS} characters of JSON")
        return value


class RunAccepted(BaseModel):
    execution_id: uuid.UUID
    agent: str
    status: ExecutionStatus
    links: dict[str, str]


class ToolOut(BaseModel):
    name: str
    description: str
    writes: bool = Field(description="True: calling it only proposes a change for approval")
    low_risk: bool = Field(description="May be applied without review when AI_REQUIRE_APPROVAL_FOR_WRITES=false")
    parameters: dict[str, Any]


class AgentOut(BaseModel):
    name: str
    description: str
    prompt_version: str
    default_task: str
    read_only: bool
    context: dict[str, Any]
    tools: list[ToolOut]
    limits: dict[str, Any]


class StepOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int
    iteration: int
    kind: Literal["model", "tool", "limit", "error"]
    tool: str | None
    tool_call_id: str | None
    content: str | None
    tool_calls: list[Any] | None
    arguments: dict[str, Any] | None
    result: Any
    error: dict[str, Any] | None
    prompt_tokens: int
    completion_tokens: int
    duration_ms: float
    pending_action_id: uuid.UUID | None
    created_at: datetime


class ApprovalRefusalOut(BaseModel):
    rule: RefusalRule = Field(
        description="status: already decided; role: admins only; action: this kind is admin-only; "
        "self_approval: you asked for it"
    )
    message: str


class PendingActionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agent: str
    execution_id: uuid.UUID | None
    action: str
    operation: Literal["create", "update"]
    entity_type: str
    entity_id: uuid.UUID | None
    changes: dict[str, Any] = Field(description="field -> {before, after}")
    reasoning: str
    context: dict[str, Any]
    status: ActionStatus
    low_risk: bool
    auto_applied: bool
    base_version: int | None = Field(description="The record version the agent saw")
    expires_at: datetime
    reviewer_id: uuid.UUID | None
    reviewed_at: datetime | None
    rejection_reason: str | None
    edited_fields: dict[str, Any] | None
    result: dict[str, Any] | None
    requested_by: uuid.UUID | None = Field(description="The user who asked for it (None: nobody, or not recorded)")
    created_at: datetime
    updated_at: datetime
    can_approve: bool = Field(
        default=False, description="Whether you may approve it now (pending, and the approvals policy allows you)"
    )
    approval_refusal: ApprovalRefusalOut | None = Field(default=None, description="Why not, when you may not")


class ExecutionSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agent: str
    task: str
    context: dict[str, Any]
    status: ExecutionStatus
    stop_reason: str | None
    error: dict[str, Any] | None
    answer: str | None
    limits: dict[str, Any]
    iterations: int
    step_count: int
    prompt_tokens: int
    completion_tokens: int
    model: str | None
    prompt_version: str | None
    requested_by: uuid.UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class ExecutionOut(ExecutionSummaryOut):
    pending_actions: list[PendingActionOut]
    steps: list[StepOut]


class ApproveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    edited_fields: dict[str, Any] | None = Field(
        default=None, description="New values for fields the proposal changes (others are refused)"
    )


class RejectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=2000)


class ApprovalPageOut(BaseModel):
    data: list[PendingActionOut]
    next_cursor: str | None


class ApprovalPolicyOut(ApprovalPolicy):
    """The organization's approvals policy (the defaults until an admin sets one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    updated_at: datetime | None = Field(description="When an admin last set it (null: never, the defaults apply)")
    updated_by: uuid.UUID | None
