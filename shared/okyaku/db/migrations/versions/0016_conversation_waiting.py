"""conversation: activities waiting for the language model

An activity whose analysis failed because the model was unavailable (unreachable, timed out,
busy, its output unusable) gets a row here, and its queue message is acknowledged instead of
being retried into the dead-letter queue: the scheduled sweep analyses it when the model is
back, and the API says why it is not analysed yet. The row goes when an analysis is stored.

Revision ID: 0016
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0016"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"


def upgrade() -> None:
    op.create_table(
        "conversation_waiting",
        sa.Column("activity_id", sa.UUID(), sa.ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "organization_id",
            sa.UUID(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            server_default=sa.text(CURRENT_ORG),
            nullable=False,
        ),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("ix_conversation_waiting_organization", "conversation_waiting", ["organization_id"])
    role = context.config.attributes.get("app_role", "okyaku_app")
    for statement in tenant_isolation_sql("conversation_waiting", role):
        op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_conversation_waiting_organization", table_name="conversation_waiting")
    op.drop_table("conversation_waiting")
