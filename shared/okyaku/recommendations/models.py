"""Tables of the recommendations feature: one card per (entity, rule), refreshed in place, and
every piece of feedback on the cards. Created by migration 0008."""

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
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from okyaku.db.models import Base, org_fk

RECOMMENDATION_TYPES = (
    "send_email",
    "schedule_call",
    "create_task",
    "update_deal_stage",
    "add_note",
    "send_proposal",
    "follow_up",
    "re_engage",
)
# open: shown; snoozed/dismissed: hidden until hidden_until; done/applied: closed by the user;
# resolved: its facts no longer hold; expired: not confirmed by a refresh before expires_at.
STATUSES = ("open", "snoozed", "dismissed", "done", "applied", "resolved", "expired")
CLOSED_STATUSES = ("done", "applied")
FEEDBACK_KINDS = ("helpful", "not_helpful", "done", "dismissed", "snoozed", "applied")

_NOW = text("clock_timestamp()")


class Recommendation(Base):
    __tablename__ = "recommendations"
    __table_args__ = (
        UniqueConstraint("organization_id", "entity_type", "entity_id", "rule", name="uq_recommendations_entity_rule"),
        CheckConstraint(f"type IN {RECOMMENDATION_TYPES}", name="recommendation_type_valid"),
        CheckConstraint(f"status IN {STATUSES}", name="recommendation_status_valid"),
        CheckConstraint("priority BETWEEN 1 AND 5", name="recommendation_priority_range"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="recommendation_confidence_range"),
        Index("ix_recommendations_entity", "organization_id", "entity_type", "entity_id"),
        Index("ix_recommendations_owner", "organization_id", "owner_id", "status"),
        Index("ix_recommendations_company", "organization_id", "company_id"),
    )
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    entity_type: Mapped[str] = mapped_column(String(20), nullable=False)
    entity_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    rule: Mapped[str] = mapped_column(String(60), nullable=False)
    type: Mapped[str] = mapped_column(String(30), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="open")
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    facts: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    # What identifies the situation (e.g. the last touch's date): a card closed as done comes
    # back only when the situation is a new one.
    trigger_key: Mapped[str] = mapped_column(String(200), nullable=False)
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    confidence: Mapped[float] = mapped_column(Float, nullable=False)
    base_value: Mapped[float] = mapped_column(Float, nullable=False)  # expected value before feedback
    ranking: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    company_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    hidden_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_trigger_key: Mapped[str | None] = mapped_column(String(200))
    pending_action_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pending_actions.id", ondelete="SET NULL"))
    apply_result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    refreshed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)


class RecommendationFeedback(Base):
    __tablename__ = "recommendation_feedback"
    __table_args__ = (
        CheckConstraint(f"feedback IN {FEEDBACK_KINDS}", name="recommendation_feedback_valid"),
        Index("ix_recommendation_feedback_type", "organization_id", "type", "created_at"),
        Index("ix_recommendation_feedback_card", "recommendation_id"),
    )
    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    recommendation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("recommendations.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(30), nullable=False)
    rule: Mapped[str] = mapped_column(String(60), nullable=False)
    feedback: Mapped[str] = mapped_column(String(20), nullable=False)
    until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=_NOW)


RECOMMENDATION_TABLES = ("recommendations", "recommendation_feedback")
