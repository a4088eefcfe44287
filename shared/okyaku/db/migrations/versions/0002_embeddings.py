"""embeddings: one vector per (organization, entity, model), hybrid-searchable

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects import postgresql

from okyaku.db.rls import tenant_isolation_sql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The in-process embedder of the embedded default (okyaku.llm's local model). Other models'
# indexes are built by `okyaku embeddings ensure-index`, which needs no downtime.
LOCAL_MODEL = "local:all-minilm-l6-v2"
LOCAL_DIMENSION = 384
# Frozen: what okyaku.embeddings.indexes.hnsw_index_name/hnsw_index_sql gave for that model when
# this revision was written (a migration does not import feature code, so history stays as it ran).
LOCAL_HNSW_INDEX = "ix_embeddings_hnsw_local_all_minilm_l6_v2_384_04c1b79d"
LOCAL_HNSW_INDEX_SQL = (
    f"CREATE INDEX IF NOT EXISTS {LOCAL_HNSW_INDEX} ON embeddings USING hnsw "
    f"((embedding::vector({LOCAL_DIMENSION})) vector_cosine_ops) WHERE model = '{LOCAL_MODEL}'"
)


def upgrade() -> None:
    op.create_table(
        "embeddings",
        sa.Column(
            "organization_id",
            sa.UUID(),
            server_default=sa.text("(current_setting('app.organization_id'))::uuid"),
            nullable=False,
        ),
        sa.Column("entity_type", sa.String(length=20), nullable=False),
        sa.Column("entity_id", sa.UUID(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("source_version", sa.Integer(), server_default="0", nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("embedding", Vector(), nullable=False),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            # Field labels ("Company: ") are left out: keyword search matches values only.
            sa.Computed(
                "to_tsvector('english', regexp_replace(content, '^[A-Z][A-Za-z ()]{0,30}: ', '', 'gn'))",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "entity_type IN ('company', 'contact', 'deal', 'activity')", name="embeddings_entity_type_valid"
        ),
        sa.CheckConstraint("vector_dims(embedding) = dimension", name="embeddings_dimension_matches"),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("organization_id", "entity_type", "entity_id", "model"),
    )
    op.create_index("ix_embeddings_org_model_type", "embeddings", ["organization_id", "model", "entity_type"])
    op.create_index("ix_embeddings_search", "embeddings", ["search_vector"], postgresql_using="gin")
    op.execute(LOCAL_HNSW_INDEX_SQL)

    role = context.config.attributes.get("app_role", "okyaku_app")
    for statement in tenant_isolation_sql("embeddings", role):  # same isolation as the core tables
        op.execute(statement)


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {LOCAL_HNSW_INDEX}")
    op.drop_index("ix_embeddings_search", table_name="embeddings", postgresql_using="gin")
    op.drop_index("ix_embeddings_org_model_type", table_name="embeddings")
    op.drop_table("embeddings")
