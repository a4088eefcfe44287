"""chat: conversations and messages (each answer's plan, data, citations, actions)

Revision ID: 0006
Revises: 0001
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0006"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("chat_conversations", "chat_messages")
CURRENT_ORG = "(current_setting('app.organization_id'))::uuid"


def _org_column() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "organization_id",
        sa.UUID(),
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        server_default=sa.text(CURRENT_ORG),
        nullable=False,
    )


def _jsonb(name: str, default: str | None = "'[]'::jsonb") -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        name, postgresql.JSONB(), server_default=sa.text(default) if default else None, nullable=default is None
    )


def _now(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False)


def upgrade() -> None:
    op.create_table(
        "chat_conversations",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column("user_id", sa.UUID(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("message_count", sa.Integer(), server_default="0", nullable=False),
        _now("created_at"),
        _now("updated_at"),
    )
    op.create_index("ix_chat_conversations_org_updated", "chat_conversations", ["organization_id", "updated_at"])
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), primary_key=True),
        _org_column(),
        sa.Column(
            "conversation_id", sa.UUID(), sa.ForeignKey("chat_conversations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        _jsonb("plan", None),
        _jsonb("data", None),
        _jsonb("citations"),
        _jsonb("actions"),
        _jsonb("notes"),
        sa.Column("degraded", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=True),
        _now("created_at"),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="chat_message_role_valid"),
    )
    op.create_index("ix_chat_messages_conversation", "chat_messages", ["conversation_id", "seq"], unique=True)
    role = context.config.attributes.get("app_role", "okyaku_app")
    for table in TABLES:
        for statement in tenant_isolation_sql(table, role):
            op.execute(statement)


def downgrade() -> None:
    op.drop_index("ix_chat_messages_conversation", table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_index("ix_chat_conversations_org_updated", table_name="chat_conversations")
    op.drop_table("chat_conversations")
