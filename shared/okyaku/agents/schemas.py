"""Request and response contracts of the agents API (pydantic v2)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from okyaku.agents.grounding import GroundingReason
from okyaku.agents.policy import ApprovalPolicy, RefusalRule

ExecutionStatus = Literal["queued", "running", "completed", "inconclusive", "stopped", "failed"]
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
    kind: Literal["model", "tool", "check", "limit", "error"]
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


class VerificationOut(BaseModel):
    """The check of a run's final answer against what its tools returned."""

    verified: bool = Field(description="True: every number and name of the answer was found in the tool results")
    reason: GroundingReason | None = Field(
        description="Why not: no_tool_calls (the model called no tool), ungrounded_numbers, ungrounded_names, "
        "unsupported_answer (it cites nothing the tools returned), empty_answer"
    )
    message: str
    ungrounded_numbers: list[str] = Field(description="Numbers of the answer not found in the tool results")
    ungrounded_names: list[str] = Field(description="Names of the answer not found in the tool results")
    cited: list[str] = Field(default_factory=list, description="Facts of the tool results the answer repeats")


class ExecutionSummaryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    agent: str
    task: str
    context: dict[str, Any]
    status: ExecutionStatus = Field(
        description="completed: the answer was checked against the tool results; inconclusive: it ended with an "
        "answer that could not be verified (see verification), its proposals still wait for review"
    )
    stop_reason: str | None = Field(description="final_answer, a grounding reason when inconclusive, or a limit/error")
    error: dict[str, Any] | None
    answer: str | None = Field(description="The final answer; unverified unless verification.verified")
    verification: VerificationOut | None = Field(
        default=None, description="The check of the answer (null: no answer, or a run from before the check)"
    )
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
