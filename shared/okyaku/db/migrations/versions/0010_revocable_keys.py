"""Users can be deactivated, and an API key goes with its user

A deactivated user's keys stop working (checked at authentication); deleting a user deletes
their keys instead of leaving them working with no user behind them. A key made for no user
(a service key) stays as it is.

Revision ID: 0010
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("deactivated_at", sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint("api_keys_user_id_fkey", "api_keys", type_="foreignkey")
    op.create_foreign_key("api_keys_user_id_fkey", "api_keys", "users", ["user_id"], ["id"], ondelete="CASCADE")


def downgrade() -> None:
    op.drop_constraint("api_keys_user_id_fkey", "api_keys", type_="foreignkey")
    op.create_foreign_key("api_keys_user_id_fkey", "api_keys", "users", ["user_id"], ["id"], ondelete="SET NULL")
    op.drop_column("users", "deactivated_at")
