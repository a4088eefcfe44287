"""approvals policy: who may decide on proposals, per organization; who asked for each proposal

``approval_policies`` holds one row per organization that set a policy (no row: the defaults of
okyaku.agents.policy). ``pending_actions.requested_by`` records the user who asked for a change,
for the self-approval rule. It alters 0004's table, so it depends on 0004.

Revision ID: 0011
Revises: 0001
Create Date: 2026-12-02 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0011"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0004"

CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"


def upgrade() -> None:
    op.create_table(
        "approval_policies",
        sa.Column(
            "organization_id",
            sa.UUID(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            server_default=sa.text(CURRENT_ORG),
            primary_key=True,
        ),
        sa.Column("approver_role", sa.String(length=10), nullable=False),
        sa.Column("admin_only_actions", postgresql.ARRAY(sa.String(length=60)), nullable=False),
        sa.Column("allow_self_approval", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.UUID(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.CheckConstraint("approver_role IN ('member', 'admin')", name="approval_policy_role_valid"),
    )
    for statement in tenant_isolation_sql("approval_policies", context.config.attributes.get("app_role", "okyaku_app")):
        op.execute(statement)
    op.add_column(
        "pending_actions",
        sa.Column("requested_by", sa.UUID(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("pending_actions", "requested_by")
    op.drop_table("approval_policies")
