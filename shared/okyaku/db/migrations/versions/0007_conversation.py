"""conversation: analyses of activities (with history) and each organization's competitor list

Revision ID: 0007
Revises: 0001
Depends on: 0004 (analyses name the pending actions they proposed)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0007"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0004"

TABLES = ("conversation_analyses", "conversation_competitors")
CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"


def _org_column() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "organization_id",
        sa.UUID(),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        server_default=sa.text(CURRENT_ORG),
        nullable=False,
    )


def _jsonb(name: str, default: str | None = None) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, postgresql.JSONB(), server_default=sa.text(default) if default else None, nullable=False)


def upgrade() -> None:
    op.create_table(
        "conversation_analyses",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("activity_id", sa.UUID(), sa.ForeignKey("activities.id", ondelete="CASCADE"), nullable=False),
        sa.Column("analysis_version", sa.Integer(), nullable=False),
        sa.Column("activity_version", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("schema_version", sa.String(length=10), nullable=False),
        sa.Column("prompt", sa.String(length=80), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("method", sa.String(length=10), server_default="llm", nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        _jsonb("analysis"),
        _jsonb("rules"),
        _jsonb("dropped", "'[]'::jsonb"),
        sa.Column("chunks", sa.Integer(), server_default="1", nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completion_tokens", sa.Integer(), server_default="0", nullable=False),
        _jsonb("proposal_ids", "'[]'::jsonb"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("activity_id", "analysis_version", name="uq_conversation_analyses_version"),
        sa.CheckConstraint("method IN ('llm', 'rules')", name="conversation_analysis_method_valid"),
    )
    op.create_index(
        "ix_conversation_analyses_activity",
        "conversation_analyses",
        ["organization_id", "activity_id", "content_hash"],
    )
    op.create_table(
        "conversation_competitors",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("name", sa.String(length=200), nullable=False),
        _jsonb("aliases", "'[]'::jsonb"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("organization_id", "name", name="uq_conversation_competitors_name"),
    )
    role = context.config.attributes.get("app_role", "okyaku_app")
    for table in TABLES:
        for statement in tenant_isolation_sql(table, role):
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("conversation_competitors")
    op.drop_index("ix_conversation_analyses_activity", table_name="conversation_analyses")
    op.drop_table("conversation_analyses")
