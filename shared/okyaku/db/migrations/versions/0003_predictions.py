"""predictions: trained models, scores with history, current score per entity

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("prediction_models", "predictions", "current_predictions")
CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"


def _org_column(primary_key: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "organization_id",
        sa.UUID(),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        server_default=sa.text(CURRENT_ORG),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "prediction_models",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("target", sa.String(length=20), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("algorithm", sa.String(length=30), nullable=False),
        sa.Column(
            "trained_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("n_examples", sa.Integer(), nullable=False),
        sa.Column("n_positive", sa.Integer(), nullable=False),
        sa.Column("n_train", sa.Integer(), nullable=False),
        sa.Column("n_test", sa.Integer(), nullable=False),
        sa.Column("metrics", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("features", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("excluded_features", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("artefact", sa.LargeBinary(), nullable=True),
        sa.UniqueConstraint("organization_id", "target", "version"),
        sa.CheckConstraint(
            "target IN ('lead', 'churn', 'deal', 'deal_amount', 'deal_cycle')", name="prediction_model_target_valid"
        ),
        sa.CheckConstraint("method IN ('model', 'prior')", name="prediction_model_method_valid"),
    )
    op.create_table(
        "predictions",
        sa.Column("id", sa.UUID(), primary_key=True),
        _org_column(),
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.UUID(), nullable=False),
        sa.Column("target", sa.String(length=20), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.CheckConstraint("target IN ('lead_score', 'churn_risk', 'deal_forecast')", name="prediction_target_valid"),
        sa.CheckConstraint("method IN ('model', 'prior')", name="prediction_method_valid"),
    )
    op.create_index(
        "ix_predictions_entity", "predictions", ["organization_id", "entity_type", "entity_id", "created_at"]
    )
    op.create_table(
        "current_predictions",
        _org_column(primary_key=True),
        sa.Column("target", sa.String(length=20), primary_key=True),
        sa.Column("entity_id", sa.UUID(), primary_key=True),
        sa.Column("prediction_id", sa.UUID(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("last_event_id", sa.UUID(), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_current_predictions_rank", "current_predictions", ["organization_id", "target", "score", "entity_id"]
    )
    _enable_row_level_security()


def _enable_row_level_security() -> None:
    """Same isolation as the core tables (see 0001): FORCE RLS, one organization per transaction."""
    role = context.config.attributes.get("app_role", "okyaku_app")
    for table in TABLES:
        for statement in tenant_isolation_sql(table, role):
            op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_current_predictions_rank", table_name="current_predictions")
    op.drop_table("current_predictions")
    op.drop_index("ix_predictions_entity", table_name="predictions")
    op.drop_table("predictions")
    op.drop_table("prediction_models")
