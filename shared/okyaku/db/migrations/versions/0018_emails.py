"""emails: the outbox of outgoing e-mail

One row per e-mail a person or an approved proposal sends: queued, claimed by a worker
(``FOR UPDATE SKIP LOCKED``, then ``sending`` under a lease), sent or failed with the reason.
The Message-ID is generated once, before the first attempt, and kept on every retry; the
e-mail's outbound activity carries the same one (migration 0017).

Revision ID: 0018
Revises: 0017 (depends on 0004: pending_actions)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0004"  # pending_actions

CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"
STATUSES = ("queued", "sending", "sent", "failed")


def _fk(column: str, table: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(column, sa.UUID(), sa.ForeignKey(f"{table}.id", ondelete="SET NULL"), nullable=True)


def _at(column: str, *, default: bool) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        column,
        sa.DateTime(timezone=True),
        server_default=sa.text("clock_timestamp()") if default else None,
        nullable=not default,
    )


def upgrade() -> None:
    op.create_table(
        "emails",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        sa.Column(
            "organization_id",
            sa.UUID(),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            server_default=sa.text(CURRENT_ORG),
            nullable=False,
        ),
        _fk("activity_id", "activities"),
        _fk("contact_id", "contacts"),
        _fk("deal_id", "deals"),
        _fk("created_by", "users"),
        _fk("pending_action_id", "pending_actions"),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("reply_to", sa.String(length=320), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("in_reply_to", sa.String(length=998), nullable=True),
        sa.Column("references", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=10), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        _at("next_attempt_at", default=True),
        _at("lease_until", default=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("transport", sa.String(length=10), nullable=True),
        sa.Column("provider_message_id", sa.String(length=998), nullable=True),
        _at("created_at", default=True),
        _at("sent_at", default=False),
        _at("updated_at", default=True),
        sa.CheckConstraint(f"status IN {STATUSES}", name="email_status_valid"),
    )
    op.create_index("ix_emails_organization_id", "emails", ["organization_id"])
    op.create_index("ux_emails_org_message_id", "emails", ["organization_id", "message_id"], unique=True)
    op.create_index("ix_emails_org_created", "emails", ["organization_id", "created_at"])
    op.create_index("ix_emails_activity", "emails", ["activity_id"])
    op.create_index(
        "ix_emails_due",
        "emails",
        ["organization_id", "next_attempt_at"],
        postgresql_where=sa.text("status IN ('queued', 'sending')"),
    )
    # An approved draft is sent once, however often its approval is replayed.
    op.create_index(
        "ux_emails_pending_action",
        "emails",
        ["pending_action_id"],
        unique=True,
        postgresql_where=sa.text("pending_action_id IS NOT NULL"),
    )
    role = context.config.attributes.get("app_role", "okyaku_app")
    for statement in tenant_isolation_sql("emails", role):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("emails")
