"""indexes the next-best-action facts of one record read

Refreshing one record's cards reads its deal's open tasks (``tasks.deal_id`` had no index: every
refresh scanned the organization's tasks) and the stays in that deal's stage (the deals that
entered the stage, then those deals' histories in order), so neither reads the whole organization.

Revision ID: 0024
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_tasks_deal_id"), "tasks", ["deal_id"], unique=False)
    op.create_index("ix_deal_stage_history_org_stage", "deal_stage_history", ["organization_id", "to_stage_id"])
    op.create_index("ix_deal_stage_history_deal_changed", "deal_stage_history", ["deal_id", "changed_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_deal_stage_history_deal_changed", table_name="deal_stage_history")
    op.drop_index("ix_deal_stage_history_org_stage", table_name="deal_stage_history")
    op.drop_index(op.f("ix_tasks_deal_id"), table_name="tasks")
