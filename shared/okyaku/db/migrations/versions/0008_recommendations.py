"""recommendations: next-best-action cards (one per entity and rule) and the feedback on them

Revision ID: 0008
Revises: 0001
Depends on: 0004 (a card that was applied points at its pending action)
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0008"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0004",)

TABLES = ("recommendations", "recommendation_feedback")
CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"
# Frozen copies of the values the code uses (a migration never imports feature code).
TYPES = (
    "('send_email', 'schedule_call', 'create_task', 'update_deal_stage', 'add_note', "
    "'send_proposal', 'follow_up', 're_engage')"
)
STATUSES = "('open', 'snoozed', 'dismissed', 'done', 'applied', 'resolved', 'expired')"
FEEDBACK = "('helpful', 'not_helpful', 'done', 'dismissed', 'snoozed', 'applied')"


def _org_column() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "organization_id",
        sa.UUID(),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        server_default=sa.text(CURRENT_ORG),
        nullable=False,
    )


def _timestamp(name: str, nullable: bool = False, default: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        server_default=sa.text("clock_timestamp()") if default else None,
        nullable=nullable,
    )


def upgrade() -> None:
    op.create_table(
        "recommendations",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.UUID(), nullable=False),
        sa.Column("rule", sa.String(length=60), nullable=False),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="open", nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("facts", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("trigger_key", sa.String(length=200), nullable=False),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("base_value", sa.Float(), nullable=False),
        sa.Column("ranking", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("owner_id", sa.UUID(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("company_id", sa.UUID(), nullable=True),
        sa.Column("hidden_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_trigger_key", sa.String(length=200), nullable=True),
        sa.Column(
            "pending_action_id", sa.UUID(), sa.ForeignKey("pending_actions.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("apply_result", postgresql.JSONB(), nullable=True),
        _timestamp("expires_at", default=False),
        _timestamp("refreshed_at"),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint(
            "organization_id", "entity_type", "entity_id", "rule", name="uq_recommendations_entity_rule"
        ),
        sa.CheckConstraint(f"type IN {TYPES}", name="recommendation_type_valid"),
        sa.CheckConstraint(f"status IN {STATUSES}", name="recommendation_status_valid"),
        sa.CheckConstraint("priority BETWEEN 1 AND 5", name="recommendation_priority_range"),
        sa.CheckConstraint("confidence >= 0 AND confidence <= 1", name="recommendation_confidence_range"),
    )
    op.create_index("ix_recommendations_entity", "recommendations", ["organization_id", "entity_type", "entity_id"])
    op.create_index("ix_recommendations_owner", "recommendations", ["organization_id", "owner_id", "status"])
    op.create_index("ix_recommendations_company", "recommendations", ["organization_id", "company_id"])
    op.create_table(
        "recommendation_feedback",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column(
            "recommendation_id", sa.UUID(), sa.ForeignKey("recommendations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("user_id", sa.UUID(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("rule", sa.String(length=60), nullable=False),
        sa.Column("feedback", sa.String(length=20), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        _timestamp("created_at"),
        sa.CheckConstraint(f"feedback IN {FEEDBACK}", name="recommendation_feedback_valid"),
    )
    op.create_index(
        "ix_recommendation_feedback_type", "recommendation_feedback", ["organization_id", "type", "created_at"]
    )
    op.create_index("ix_recommendation_feedback_card", "recommendation_feedback", ["recommendation_id"])
    role = context.config.attributes.get("app_role", "okyaku_app")
    for table in TABLES:
        for statement in tenant_isolation_sql(table, role):
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("recommendation_feedback")
    op.drop_table("recommendations")
