"""Tables of the predictions feature: trained models, scores with history, and the current score
per entity (which is also the queue consumer's idempotence record). Created by migration 0003."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, deferred, mapped_column

from okyaku.db.models import Base, org_fk

MODEL_TARGETS = ("lead", "churn", "deal", "deal_amount", "deal_cycle")
PREDICTION_TARGETS = ("lead_score", "churn_risk", "deal_forecast")
METHODS = ("model", "prior")


class PredictionModel(Base):
    """One trained (or prior) model per organization, target and version; never updated."""

    __tablename__ = "prediction_models"
    __table_args__ = (
        UniqueConstraint("organization_id", "target", "version"),
        CheckConstraint(f"target IN {MODEL_TARGETS}", name="prediction_model_target_valid"),
        CheckConstraint(f"method IN {METHODS}", name="prediction_model_method_valid"),
    )
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    target: Mapped[str] = mapped_column(String(20), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    method: Mapped[str] = mapped_column(String(10), nullable=False)
    algorithm: Mapped[str] = mapped_column(String(30), nullable=False)
    trained_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()")
    )
    n_examples: Mapped[int] = mapped_column(Integer, nullable=False)
    n_positive: Mapped[int] = mapped_column(Integer, nullable=False)
    n_train: Mapped[int] = mapped_column(Integer, nullable=False)
    n_test: Mapped[int] = mapped_column(Integer, nullable=False)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    features: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    excluded_features: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    # joblib of our own sklearn objects, written only by training; read back by scoring.
    artefact: Mapped[bytes | None] = deferred(mapped_column(LargeBinary))


class Prediction(Base):
    """Every score ever served or computed: history is kept, rows are only inserted."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_entity", "organization_id", "entity_type", "entity_id", "created_at"),
        CheckConstraint(f"target IN {PREDICTION_TARGETS}", name="prediction_target_valid"),
        CheckConstraint(f"method IN {METHODS}", name="prediction_method_valid"),
    )
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    entity_type: Mapped[str] = mapped_column(String(20), nullable=False)
    entity_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    target: Mapped[str] = mapped_column(String(20), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    method: Mapped[str] = mapped_column(String(10), nullable=False)
    model_version: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=text("clock_timestamp()")
    )


class CurrentPrediction(Base):
    """The latest score per entity and target, with the hash of the inputs it was computed from.

    Batch listings sort on it; the change-event consumer skips an event when the entity's inputs
    hash the same as when it was last scored (a duplicate, or a burst already covered)."""

    __tablename__ = "current_predictions"
    __table_args__ = (Index("ix_current_predictions_rank", "organization_id", "target", "score", "entity_id"),)
    organization_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("organizations.id", ondelete="CASCADE"),
        primary_key=True,
        server_default=text("(current_setting('app.organization_id'))::uuid"),
    )
    target: Mapped[str] = mapped_column(String(20), primary_key=True)
    entity_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    prediction_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    input_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    model_version: Mapped[int | None] = mapped_column(Integer)
    last_event_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


PREDICTION_TABLES = ("prediction_models", "predictions", "current_predictions")
