"""The ``embeddings`` table: one row per (organization, entity, model).

The vector column has no fixed dimension so that models of different sizes live side by
side; each model gets its own partial HNSW index over ``embedding::vector(<dim>)``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import CheckConstraint, Computed, DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import TSVECTOR, UUID
from sqlalchemy.orm import Mapped, mapped_column

from okyaku.db.models import Base

EMBEDDABLE_TYPES = ("company", "contact", "deal", "activity")
TEXT_SEARCH_CONFIG = "english"  # stemming: "renewals" finds "renewal"
# Keyword search matches the record's values, not the field labels of the text ("Company: ",
# "Stage: "): otherwise every query that says "company" or "deal" would match every record.
SEARCH_VECTOR_SQL = (
    f"to_tsvector('{TEXT_SEARCH_CONFIG}', regexp_replace(content, '^[A-Z][A-Za-z ()]{{0,30}}: ', '', 'gn'))"
)


class Embedding(Base):
    __tablename__ = "embeddings"
    __table_args__ = (
        CheckConstraint(f"entity_type IN {EMBEDDABLE_TYPES}", name="embeddings_entity_type_valid"),
        CheckConstraint("vector_dims(embedding) = dimension", name="embeddings_dimension_matches"),
        Index("ix_embeddings_org_model_type", "organization_id", "model", "entity_type"),
        Index("ix_embeddings_search", "search_vector", postgresql_using="gin"),
    )

    organization_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("organizations.id", ondelete="CASCADE"),
        primary_key=True,
        server_default=text("(current_setting('app.organization_id'))::uuid"),
    )
    entity_type: Mapped[str] = mapped_column(String(20), primary_key=True)
    entity_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    dimension: Mapped[int] = mapped_column(Integer, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # The record's version when its text was read: an older delivery never overwrites a newer one.
    source_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    content: Mapped[str] = mapped_column(Text, nullable=False)
    embedding: Mapped[Any] = mapped_column(Vector(), nullable=False)
    search_vector: Mapped[Any] = mapped_column(TSVECTOR, Computed(SEARCH_VECTOR_SQL, persisted=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
