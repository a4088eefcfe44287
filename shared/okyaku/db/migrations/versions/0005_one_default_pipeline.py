"""At most one default pipeline per organization, enforced by the database

Two requests making different pipelines the default at the same time could otherwise both win.

Revision ID: 0005
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE UNIQUE INDEX uq_pipelines_one_default ON pipelines (organization_id) WHERE is_default")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS uq_pipelines_one_default")
