"""agents: executions with their steps, and the approval queue (pending actions)

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-26 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("agent_executions", "agent_steps", "pending_actions")
CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"
EXECUTION_STATUSES = "('queued', 'running', 'completed', 'stopped', 'failed')"
ACTION_STATUSES = "('pending', 'approved', 'rejected', 'expired', 'failed', 'withdrawn')"


def _org_column() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "organization_id",
        sa.UUID(),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        server_default=sa.text(CURRENT_ORG),
        nullable=False,
    )


def _jsonb(name: str, default: str = "'{}'::jsonb", nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, postgresql.JSONB(), server_default=sa.text(default) if default else None, nullable=nullable)


def _timestamp(name: str, nullable: bool = False, default: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("clock_timestamp()") if default else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "agent_executions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("agent", sa.String(length=50), nullable=False),
        sa.Column("task", sa.Text(), nullable=False),
        _jsonb("context"),
        sa.Column("status", sa.String(length=20), server_default="queued", nullable=False),
        sa.Column("stop_reason", sa.String(length=40), nullable=True),
        _jsonb("error", default="", nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
        _jsonb("limits"),
        sa.Column("iterations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("step_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("prompt_version", sa.String(length=50), nullable=True),
        sa.Column("requested_by", sa.UUID(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        _timestamp("created_at"),
        _timestamp("started_at", nullable=True, default=False),
        _timestamp("finished_at", nullable=True, default=False),
        _timestamp("updated_at"),
        sa.CheckConstraint(f"status IN {EXECUTION_STATUSES}", name="agent_execution_status_valid"),
    )
    op.create_index("ix_agent_executions_org_created", "agent_executions", ["organization_id", "created_at"])
    op.create_table(
        "agent_steps",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        _org_column(),
        sa.Column("execution_id", sa.UUID(), sa.ForeignKey("agent_executions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("tool", sa.String(length=60), nullable=True),
        sa.Column("tool_call_id", sa.String(length=100), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        _jsonb("tool_calls", default="", nullable=True),
        _jsonb("arguments", default="", nullable=True),
        _jsonb("result", default="", nullable=True),
        _jsonb("error", default="", nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("duration_ms", sa.Float(), server_default="0", nullable=False),
        sa.Column("pending_action_id", sa.UUID(), nullable=True),
        _timestamp("created_at"),
        sa.UniqueConstraint("execution_id", "seq"),
        sa.CheckConstraint("kind IN ('model', 'tool', 'limit', 'error')", name="agent_step_kind_valid"),
    )
    op.create_table(
        "pending_actions",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("agent", sa.String(length=50), nullable=False),
        sa.Column("execution_id", sa.UUID(), sa.ForeignKey("agent_executions.id", ondelete="SET NULL"), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("operation", sa.String(length=10), nullable=False),
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.UUID(), nullable=True),
        _jsonb("changes"),
        sa.Column("reasoning", sa.Text(), nullable=False),
        _jsonb("context"),
        sa.Column("status", sa.String(length=20), server_default="pending", nullable=False),
        sa.Column("low_risk", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("auto_applied", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=True),
        _timestamp("expires_at", default=False),
        sa.Column("reviewer_id", sa.UUID(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        _timestamp("reviewed_at", nullable=True, default=False),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        _jsonb("edited_fields", default="", nullable=True),
        _jsonb("result", default="", nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(f"status IN {ACTION_STATUSES}", name="pending_action_status_valid"),
        sa.CheckConstraint("operation IN ('create', 'update')", name="pending_action_operation_valid"),
    )
    op.create_index("ix_pending_actions_queue", "pending_actions", ["organization_id", "status", "created_at"])
    op.create_index("ix_pending_actions_entity", "pending_actions", ["organization_id", "entity_type", "entity_id"])
    op.create_index("ix_pending_actions_execution", "pending_actions", ["execution_id"])
    _enable_row_level_security()


def _enable_row_level_security() -> None:
    """Same isolation as the core tables (see 0001): FORCE RLS, one organization per transaction."""
    role = context.config.attributes.get("app_role", "okyaku_app")
    for table in TABLES:
        for statement in tenant_isolation_sql(table, role):
            op.execute(statement)
    op.execute(f"GRANT USAGE, SELECT ON SEQUENCE agent_steps_id_seq TO {role}")


def downgrade() -> None:
    op.drop_index("ix_pending_actions_execution", table_name="pending_actions")
    op.drop_index("ix_pending_actions_entity", table_name="pending_actions")
    op.drop_index("ix_pending_actions_queue", table_name="pending_actions")
    op.drop_table("pending_actions")
    op.drop_table("agent_steps")
    op.drop_index("ix_agent_executions_org_created", table_name="agent_executions")
    op.drop_table("agent_executions")
