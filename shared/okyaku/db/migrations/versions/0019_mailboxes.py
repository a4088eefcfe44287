"""mailboxes: users' IMAP connections (password encrypted at rest) and the per-folder UID cursors
of the incremental sync; notifications may now say that a mailbox stopped syncing

Revision ID: 0019
Revises: 0017
Depends on: 0009 (the notifications table)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0019"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0009",)

CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"
NOW = sa.text("clock_timestamp()")


def _org_column() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "organization_id",
        sa.UUID(),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        server_default=sa.text(CURRENT_ORG),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "mailboxes",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("user_id", sa.UUID(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("imap_host", sa.String(length=255), nullable=False),
        sa.Column("imap_port", sa.Integer(), nullable=False),
        sa.Column("tls_mode", sa.String(length=10), nullable=False),
        sa.Column("username", sa.String(length=320), nullable=False),
        sa.Column("password_encrypted", sa.Text(), nullable=False),
        sa.Column("folders", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="pending", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("messages_synced", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
        sa.UniqueConstraint("organization_id", "user_id", "imap_host", "username", name="uq_mailboxes_user_account"),
        sa.CheckConstraint("tls_mode IN ('ssl', 'starttls', 'none')", name="mailbox_tls_mode_valid"),
        sa.CheckConstraint("status IN ('pending', 'ok', 'error')", name="mailbox_status_valid"),
    )
    op.create_index("ix_mailboxes_organization_id", "mailboxes", ["organization_id"])
    op.create_table(
        "mailbox_folders",
        sa.Column("mailbox_id", sa.UUID(), sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("folder", sa.String(length=500), primary_key=True),
        _org_column(),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW, nullable=False),
    )
    op.create_index("ix_mailbox_folders_organization_id", "mailbox_folders", ["organization_id"])
    role = context.config.attributes.get("app_role", "okyaku_app")
    for table in ("mailboxes", "mailbox_folders"):
        for statement in tenant_isolation_sql(table, role):
            op.execute(statement)
    # A mailbox that stops syncing (bad password, server down) notifies its owner.
    op.drop_constraint("notification_kind_valid", "notifications", type_="check")
    op.create_check_constraint(
        "notification_kind_valid", "notifications", "kind IN ('anomaly', 'weekly_summary', 'mailbox')"
    )


def downgrade() -> None:
    op.execute("DELETE FROM notifications WHERE kind = 'mailbox'")
    op.drop_constraint("notification_kind_valid", "notifications", type_="check")
    op.create_check_constraint("notification_kind_valid", "notifications", "kind IN ('anomaly', 'weekly_summary')")
    op.drop_index("ix_mailbox_folders_organization_id", table_name="mailbox_folders")
    op.drop_table("mailbox_folders")
    op.drop_index("ix_mailboxes_organization_id", table_name="mailboxes")
    op.drop_table("mailboxes")
