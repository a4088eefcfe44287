"""Tables of the anomalies feature (migration 0009): anomalies, deal snapshots, weekly insights,
notifications. Every row carries its organization; RLS is forced on all four."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from okyaku.db.models import Base, org_fk, uuid_pk

ANOMALY_TYPES = ("stale_deal", "deal_change", "data_gap", "churn_risk", "engagement_drop", "unusual_pattern")
SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "acknowledged", "resolved", "dismissed")
OPEN_STATUSES = ("open", "acknowledged")
EMAIL_STATUSES = ("pending", "digest", "sent", "skipped")


def _now_column(nullable: bool = False) -> Mapped[datetime]:
    return mapped_column(
        DateTime(timezone=True), nullable=nullable, server_default=None if nullable else text("clock_timestamp()")
    )


class Anomaly(Base):
    __tablename__ = "anomalies"
    __table_args__ = (
        Index(
            "uq_anomalies_one_open",
            "organization_id",
            "type",
            "entity_key",
            unique=True,
            postgresql_where=text("status IN ('open', 'acknowledged')"),
        ),
        Index("ix_anomalies_org_detected", "organization_id", "last_detected_at"),
        CheckConstraint(f"type IN {ANOMALY_TYPES}", name="anomaly_type_valid"),
        CheckConstraint(f"severity IN {SEVERITIES}", name="anomaly_severity_valid"),
        CheckConstraint(f"status IN {STATUSES}", name="anomaly_status_valid"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    type: Mapped[str] = mapped_column(String(30), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(20), nullable=False)
    entity_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    entity_key: Mapped[str] = mapped_column(String(300), nullable=False)
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False)
    severity: Mapped[str] = mapped_column(String(10), nullable=False)
    status: Mapped[str] = mapped_column(String(15), nullable=False, server_default="open")
    deviation: Mapped[float | None] = mapped_column(Float)
    money_at_stake: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    detection_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    first_detected_at: Mapped[datetime] = _now_column()
    last_detected_at: Mapped[datetime] = _now_column()
    status_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status_changed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    status_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()


class DealSnapshot(Base):
    """What a deal looked like at the last scan: the "before" of close-date and amount changes."""

    __tablename__ = "anomaly_deal_snapshots"
    organization_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("organizations.id", ondelete="CASCADE"),
        primary_key=True,
        server_default=text("(current_setting('app.organization_id'))::uuid"),
    )
    deal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), primary_key=True)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    stage_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    deal_version: Mapped[int] = mapped_column(Integer, nullable=False)
    # the deal's last deal_stage_history row seen: later rows are the stage changes since
    stage_history_id: Mapped[int | None] = mapped_column(BigInteger)
    captured_at: Mapped[datetime] = _now_column()


class Insight(Base):
    __tablename__ = "ai_insights"
    __table_args__ = (
        UniqueConstraint("organization_id", "week_start"),
        CheckConstraint("narrative_source IN ('llm', 'template')", name="insight_source_valid"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    week_start: Mapped[date] = mapped_column(Date, nullable=False)
    figures: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    narrative: Mapped[str] = mapped_column(Text, nullable=False)
    narrative_source: Mapped[str] = mapped_column(String(10), nullable=False)
    degraded: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    model: Mapped[str | None] = mapped_column(String(200))
    prompt_version: Mapped[str | None] = mapped_column(String(50))
    rejected_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now_column()
    updated_at: Mapped[datetime] = _now_column()


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (
        UniqueConstraint("user_id", "anomaly_id", name="uq_notifications_user_anomaly"),
        UniqueConstraint("user_id", "insight_id", name="uq_notifications_user_insight"),
        CheckConstraint("kind IN ('anomaly', 'weekly_summary', 'mailbox')", name="notification_kind_valid"),
        CheckConstraint(f"severity IN {SEVERITIES}", name="notification_severity_valid"),
        CheckConstraint(f"email_status IN {EMAIL_STATUSES}", name="notification_email_status_valid"),
        Index("ix_notifications_user_created", "organization_id", "user_id", "created_at"),
        Index(
            "ix_notifications_email_pending",
            "organization_id",
            "email_next_attempt_at",
            postgresql_where=text("email_status = 'pending'"),
        ),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    anomaly_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("anomalies.id", ondelete="CASCADE"))
    insight_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ai_insights.id", ondelete="CASCADE"))
    severity: Mapped[str] = mapped_column(String(10), nullable=False)
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    body: Mapped[str] = mapped_column(Text, nullable=False)
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # pending: to be e-mailed now; digest: waits for the weekly summary; sent; skipped (no address)
    email_status: Mapped[str] = mapped_column(String(10), nullable=False)
    email_attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    email_last_error: Mapped[str | None] = mapped_column(Text)
    email_next_attempt_at: Mapped[datetime] = _now_column()
    email_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    email_message_id: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = _now_column()


ANOMALY_TABLES = ("anomalies", "anomaly_deal_snapshots", "ai_insights", "notifications")
