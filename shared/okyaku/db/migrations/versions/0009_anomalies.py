"""anomalies: detected anomalies (one open per entity and type), deal snapshots for change
detection, weekly AI insights, per-user notifications with their e-mail delivery state

Revision ID: 0009
Revises: 0001
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0009"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("anomalies", "anomaly_deal_snapshots", "ai_insights", "notifications")
CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"
TYPES = "('stale_deal', 'deal_change', 'data_gap', 'churn_risk', 'engagement_drop', 'unusual_pattern')"
SEVERITIES = "('low', 'medium', 'high', 'critical')"
STATUSES = "('open', 'acknowledged', 'resolved', 'dismissed')"
EMAIL_STATUSES = "('pending', 'digest', 'sent', 'skipped')"


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
        "anomalies",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("type", sa.String(length=30), nullable=False),
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.UUID(), nullable=True),
        sa.Column("entity_key", sa.String(length=300), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=15), server_default="open", nullable=False),
        sa.Column("deviation", sa.Float(), nullable=True),
        sa.Column("money_at_stake", sa.Numeric(16, 2), nullable=True),
        sa.Column("evidence", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("owner_id", sa.UUID(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("detection_count", sa.Integer(), server_default="1", nullable=False),
        _timestamp("first_detected_at"),
        _timestamp("last_detected_at"),
        _timestamp("status_changed_at", nullable=True, default=False),
        sa.Column("status_changed_by", sa.UUID(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("status_note", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.CheckConstraint(f"type IN {TYPES}", name="anomaly_type_valid"),
        sa.CheckConstraint(f"severity IN {SEVERITIES}", name="anomaly_severity_valid"),
        sa.CheckConstraint(f"status IN {STATUSES}", name="anomaly_status_valid"),
    )
    # dedup: at most one open (or acknowledged) anomaly per entity and type
    op.create_index(
        "uq_anomalies_one_open",
        "anomalies",
        ["organization_id", "type", "entity_key"],
        unique=True,
        postgresql_where=sa.text("status IN ('open', 'acknowledged')"),
    )
    op.create_index("ix_anomalies_org_detected", "anomalies", ["organization_id", "last_detected_at"])
    op.create_table(
        "anomaly_deal_snapshots",
        sa.Column(
            "organization_id",
            sa.UUID(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            server_default=sa.text(CURRENT_ORG),
            primary_key=True,
        ),
        sa.Column("deal_id", sa.UUID(), sa.ForeignKey("deals.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("amount", sa.Numeric(16, 2), nullable=True),
        sa.Column("expected_close_date", sa.Date(), nullable=True),
        sa.Column("stage_id", sa.UUID(), nullable=True),
        sa.Column("deal_version", sa.Integer(), nullable=False),
        # the deal's last deal_stage_history row seen: later rows are the stage changes since
        sa.Column("stage_history_id", sa.BigInteger(), nullable=True),
        _timestamp("captured_at"),
    )
    op.create_table(
        "ai_insights",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("week_start", sa.Date(), nullable=False),
        sa.Column("figures", postgresql.JSONB(), nullable=False),
        sa.Column("narrative", sa.Text(), nullable=False),
        sa.Column("narrative_source", sa.String(length=10), nullable=False),
        sa.Column("degraded", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("prompt_version", sa.String(length=50), nullable=True),
        sa.Column("rejected_reason", sa.Text(), nullable=True),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("organization_id", "week_start"),
        sa.CheckConstraint("narrative_source IN ('llm', 'template')", name="insight_source_valid"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("user_id", sa.UUID(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("anomaly_id", sa.UUID(), sa.ForeignKey("anomalies.id", ondelete="CASCADE"), nullable=True),
        sa.Column("insight_id", sa.UUID(), sa.ForeignKey("ai_insights.id", ondelete="CASCADE"), nullable=True),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("email_status", sa.String(length=10), nullable=False),
        sa.Column("email_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("email_last_error", sa.Text(), nullable=True),
        _timestamp("email_next_attempt_at"),
        sa.Column("email_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("email_message_id", sa.String(length=300), nullable=True),
        _timestamp("created_at"),
        sa.UniqueConstraint("user_id", "anomaly_id", name="uq_notifications_user_anomaly"),
        sa.UniqueConstraint("user_id", "insight_id", name="uq_notifications_user_insight"),
        sa.CheckConstraint("kind IN ('anomaly', 'weekly_summary')", name="notification_kind_valid"),
        sa.CheckConstraint(f"severity IN {SEVERITIES}", name="notification_severity_valid"),
        sa.CheckConstraint(f"email_status IN {EMAIL_STATUSES}", name="notification_email_status_valid"),
    )
    op.create_index("ix_notifications_user_created", "notifications", ["organization_id", "user_id", "created_at"])
    op.create_index(
        "ix_notifications_email_pending",
        "notifications",
        ["organization_id", "email_next_attempt_at"],
        postgresql_where=sa.text("email_status = 'pending'"),
    )
    role = context.config.attributes.get("app_role", "okyaku_app")
    for table in TABLES:
        for statement in tenant_isolation_sql(table, role):
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("ai_insights")
    op.drop_table("anomaly_deal_snapshots")
    op.drop_index("ix_anomalies_org_detected", table_name="anomalies")
    op.drop_index("uq_anomalies_one_open", table_name="anomalies")
    op.drop_table("anomalies")
