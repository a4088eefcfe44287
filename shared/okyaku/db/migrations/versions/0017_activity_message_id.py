"""activities: the e-mail Message-ID

An e-mail activity carries the RFC 5322 Message-ID of its message, once per organization: the
outbox generates it before the first send attempt (so a retry after an unknown outcome is
recognisable), and the mailbox sync matches inbound messages, replies and the copy in Sent of a
message we sent to the same activity by it.

Revision ID: 0017
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("activities", sa.Column("message_id", sa.String(length=998), nullable=True))
    op.create_index(
        "ux_activities_org_message_id",
        "activities",
        ["organization_id", "message_id"],
        unique=True,
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ux_activities_org_message_id", table_name="activities")
    op.drop_column("activities", "message_id")
