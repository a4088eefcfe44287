"""Tables of the agents feature: runs with every step, and the approval queue. Created by 0004."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from okyaku.db.models import Base, org_fk

# inconclusive: the run ended with an answer its tool results do not support (added by 0014)
EXECUTION_STATUSES = ("queued", "running", "completed", "inconclusive", "stopped", "failed")
FINISHED_STATUSES = ("completed", "inconclusive", "stopped", "failed")
ACTION_STATUSES = ("pending", "approved", "rejected", "expired", "failed", "withdrawn")
STEP_KINDS = ("model", "tool", "check", "limit", "error")  # check: the answer's grounding (0014)

_NOW = text("clock_timestamp()")


class AgentExecution(Base):
    """One run of one agent: what it was asked, how far it got, what it used, how it ended."""

    __tablename__ = "agent_executions"
    __table_args__ = (Index("ix_agent_executions_org_created", "organization_id", "created_at"),)
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    agent: Mapped[str] = mapped_column(String(50), nullable=False)
    task: Mapped[str] = mapped_column(Text, nullable=False)
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="queued")
    stop_reason: Mapped[str | None] = mapped_column(String(40))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    answer: Mapped[str | None] = mapped_column(Text)
    # the check of the answer against the tool results (okyaku.agents.grounding); added by 0014
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    limits: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    iterations: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    step_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[str | None] = mapped_column(String(50))
    requested_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)


class AgentStep(Base):
    """One entry of a run's log: a model turn, a tool call with its result or error, or a limit."""

    __tablename__ = "agent_steps"
    __table_args__ = (UniqueConstraint("execution_id", "seq", name="agent_steps_execution_id_seq_key"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    execution_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("agent_executions.id", ondelete="CASCADE"), nullable=False
    )
    seq: Mapped[int] = mapped_column(Integer, nullable=False)
    iteration: Mapped[int] = mapped_column(Integer, nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    tool: Mapped[str | None] = mapped_column(String(60))
    tool_call_id: Mapped[str | None] = mapped_column(String(100))
    content: Mapped[str | None] = mapped_column(Text)
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSONB)
    arguments: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    result: Mapped[Any] = mapped_column(JSONB, nullable=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    duration_ms: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    pending_action_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)


class PendingAction(Base):
    """A change an agent proposed: the exact field diff, why, and what became of it."""

    __tablename__ = "pending_actions"
    __table_args__ = (
        Index("ix_pending_actions_queue", "organization_id", "status", "created_at"),
        Index("ix_pending_actions_entity", "organization_id", "entity_type", "entity_id"),
        Index("ix_pending_actions_execution", "execution_id"),
    )
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    agent: Mapped[str] = mapped_column(String(50), nullable=False)
    execution_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("agent_executions.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(60), nullable=False)
    operation: Mapped[str] = mapped_column(String(10), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(20), nullable=False)
    entity_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    # field -> {"before": ..., "after": ...} (plus "before_label"/"after_label" for ids)
    changes: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    reasoning: Mapped[str] = mapped_column(Text, nullable=False)
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="pending")
    low_risk: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    auto_applied: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    base_version: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    reviewer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    edited_fields: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # who asked for it (started the run, asked in chat, applied the recommendation); None: nobody
    # (conversation analysis, a service key). Added by 0011; older rows fall back to their run's.
    requested_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)


class ApprovalPolicyRow(Base):
    """An organization's approvals policy (see okyaku.agents.policy); no row: the defaults. Created by 0011."""

    __tablename__ = "approval_policies"
    __table_args__ = (CheckConstraint("approver_role IN ('member', 'admin')", name="approval_policy_role_valid"),)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("organizations.id", ondelete="CASCADE"),
        primary_key=True,
        server_default=text("(current_setting('app.organization_id'))::uuid"),
    )
    approver_role: Mapped[str] = mapped_column(String(10), nullable=False)
    admin_only_actions: Mapped[list[str]] = mapped_column(ARRAY(String(60)), nullable=False)
    allow_self_approval: Mapped[bool] = mapped_column(Boolean, nullable=False)
    updated_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)


AGENT_TABLES = ("agent_executions", "agent_steps", "pending_actions")
