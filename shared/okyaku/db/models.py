"""The CRM data model (SQLAlchemy 2). Every tenant table carries ``organization_id``;
isolation is enforced by Postgres row-level security (see the first migration)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column, relationship

LIFECYCLE_STAGES = ("subscriber", "lead", "mql", "sql", "opportunity", "customer", "evangelist", "churned")
LEAD_STATUSES = (
    "new",
    "open",
    "in_progress",
    "attempted",
    "connected",
    "qualified",
    "unqualified",
    "bad_timing",
)
ACTIVITY_TYPES = ("call", "meeting", "email", "note")
TASK_STATUSES = ("open", "in_progress", "done", "cancelled")
TASK_PRIORITIES = ("low", "normal", "high")
ENTITY_TYPES = ("company", "contact", "pipeline", "deal", "activity", "task")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, uuid.UUID: UUID(as_uuid=True)}


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"))


def org_fk(*, index: bool = True) -> Mapped[uuid.UUID]:
    """The owning organization; defaults to the transaction's, so that RLS and inserts agree."""
    return mapped_column(
        UUID(as_uuid=True),
        ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
        index=index,
        server_default=text("(current_setting('app.organization_id'))::uuid"),
    )


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    created_at: Mapped[datetime] = _created()


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("organization_id", "email"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False, server_default="member")
    created_at: Mapped[datetime] = _created()
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """Only a SHA-256 of the key is stored; the key itself is shown once."""

    __tablename__ = "api_keys"
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    key_prefix: Mapped[str] = mapped_column(String(16), nullable=False)
    key_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RecordMixin:
    """Columns every CRM record has: optimistic version, timestamps, import id, custom properties."""

    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    external_id: Mapped[str | None] = mapped_column(String(200))
    custom_properties: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        # Optimistic concurrency: every UPDATE/DELETE says "WHERE version = <the one I read>".
        return {"version_id_col": cls.__table__.c.version}  # type: ignore[attr-defined]


class Company(RecordMixin, Base):
    __tablename__ = "companies"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_id"),
        Index("ix_companies_search", "search_vector", postgresql_using="gin"),
        Index("ix_companies_org_name", "organization_id", "name"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    domain: Mapped[str | None] = mapped_column(String(255))
    industry: Mapped[str | None] = mapped_column(String(100))
    employee_count: Mapped[int | None] = mapped_column(Integer)
    annual_revenue: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    country: Mapped[str | None] = mapped_column(String(100))
    city: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('simple', coalesce(name,'') || ' ' || coalesce(domain,'') || ' ' || "
            "coalesce(industry,'') || ' ' || coalesce(city,'') || ' ' || coalesce(country,''))",
            persisted=True,
        ),
    )


class Contact(RecordMixin, Base):
    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_id"),
        Index("ix_contacts_search", "search_vector", postgresql_using="gin"),
        Index("ix_contacts_org_created", "organization_id", "created_at", "id"),
        CheckConstraint(f"lifecycle_stage IN {LIFECYCLE_STAGES}", name="lifecycle_stage_valid"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    phone: Mapped[str | None] = mapped_column(String(50))
    job_title: Mapped[str | None] = mapped_column(String(200))
    company_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"), index=True)
    lifecycle_stage: Mapped[str] = mapped_column(String(20), nullable=False, server_default="lead")
    lead_status: Mapped[str | None] = mapped_column(String(20))
    source: Mapped[str | None] = mapped_column(String(100))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(
            "to_tsvector('simple', coalesce(first_name,'') || ' ' || coalesce(last_name,'') || ' ' || "
            "coalesce(email,'') || ' ' || coalesce(job_title,'') || ' ' || coalesce(source,''))",
            persisted=True,
        ),
    )


class Pipeline(RecordMixin, Base):
    __tablename__ = "pipelines"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_id"),
        # 0005: at most one default pipeline per organization
        Index("uq_pipelines_one_default", "organization_id", unique=True, postgresql_where=text("is_default")),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    is_default: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    stages: Mapped[list[PipelineStage]] = relationship(
        order_by="PipelineStage.position", lazy="selectin", cascade="all, delete-orphan"
    )


class PipelineStage(Base):
    __tablename__ = "pipeline_stages"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "position"),
        CheckConstraint("probability >= 0 AND probability <= 1", name="probability_range"),
        CheckConstraint("NOT (is_won AND is_lost)", name="won_xor_lost"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    pipeline_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    position: Mapped[int] = mapped_column(Integer, nullable=False)
    probability: Mapped[Decimal] = mapped_column(Numeric(4, 3), nullable=False, server_default="0")
    is_won: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    is_lost: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")


class Deal(RecordMixin, Base):
    __tablename__ = "deals"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_id"),
        Index("ix_deals_search", "search_vector", postgresql_using="gin"),
        CheckConstraint("amount IS NULL OR amount >= 0", name="amount_non_negative"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    name: Mapped[str] = mapped_column(String(300), nullable=False)
    pipeline_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipelines.id"), nullable=False, index=True)
    stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipeline_stages.id"), nullable=False, index=True)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(16, 2))
    currency: Mapped[str] = mapped_column(String(3), nullable=False, server_default="USD")
    expected_close_date: Mapped[date | None] = mapped_column(Date)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lost_reason: Mapped[str | None] = mapped_column(String(500))
    won_reason: Mapped[str | None] = mapped_column(String(500))  # migration 0023
    stage_entered_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    company_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"), index=True)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"), index=True)
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('simple', coalesce(name,'') || ' ' || coalesce(lost_reason,''))", persisted=True),
    )
    stage: Mapped[PipelineStage] = relationship(lazy="joined", viewonly=True)

    @property
    def status(self) -> str:
        """open, won or lost: follows the stage's flags."""
        if self.stage.is_won:
            return "won"
        return "lost" if self.stage.is_lost else "open"


class DealStageHistory(Base):
    __tablename__ = "deal_stage_history"
    __table_args__ = (
        # a stage's stays, for the next-best-action stage norms (0024): the deals that entered it,
        # then those deals' histories in order
        Index("ix_deal_stage_history_org_stage", "organization_id", "to_stage_id"),
        Index("ix_deal_stage_history_deal_changed", "deal_id", "changed_at", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    organization_id: Mapped[uuid.UUID] = org_fk()
    deal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), nullable=False, index=True)
    from_stage_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pipeline_stages.id"))
    to_stage_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pipeline_stages.id"), nullable=False)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    changed_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Activity(RecordMixin, Base):
    __tablename__ = "activities"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_id"),
        CheckConstraint(f"type IN {ACTIVITY_TYPES}", name="activity_type_valid"),
        Index("ix_activities_search", "search_vector", postgresql_using="gin"),
        Index("ix_activities_org_occurred", "organization_id", "occurred_at"),
        Index(
            "ux_activities_org_message_id",
            "organization_id",
            "message_id",
            unique=True,
            postgresql_where=text("message_id IS NOT NULL"),
        ),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    type: Mapped[str] = mapped_column(String(20), nullable=False)
    subject: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    duration_minutes: Mapped[int | None] = mapped_column(Integer)
    direction: Mapped[str | None] = mapped_column(String(10))
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    company_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), index=True)
    deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), index=True)
    # An e-mail's RFC 5322 Message-ID: set by the outbox or the mailbox sync, never by a client.
    message_id: Mapped[str | None] = mapped_column(String(998))
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('simple', coalesce(subject,'') || ' ' || coalesce(body,''))", persisted=True),
    )


class Task(RecordMixin, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("organization_id", "external_id"),
        CheckConstraint(f"status IN {TASK_STATUSES}", name="task_status_valid"),
        CheckConstraint(f"priority IN {TASK_PRIORITIES}", name="task_priority_valid"),
        Index("ix_tasks_search", "search_vector", postgresql_using="gin"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    due_date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="open")
    priority: Mapped[str] = mapped_column(String(10), nullable=False, server_default="normal")
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    company_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    deal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deals.id", ondelete="CASCADE"), index=True)
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed("to_tsvector('simple', coalesce(title,'') || ' ' || coalesce(description,''))", persisted=True),
    )


class CustomPropertyDefinition(Base):
    """The inferred (or declared) type of each custom property, per entity type."""

    __tablename__ = "custom_property_definitions"
    __table_args__ = (
        UniqueConstraint("organization_id", "entity_type", "name"),
        CheckConstraint("data_type IN ('number','boolean','date','string','category')", name="data_type_valid"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    entity_type: Mapped[str] = mapped_column(String(20), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    data_type: Mapped[str] = mapped_column(String(20), nullable=False)
    created_at: Mapped[datetime] = _created()


class ImportJob(Base):
    __tablename__ = "import_jobs"
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk()
    entity_type: Mapped[str] = mapped_column(String(20), nullable=False)
    filename: Mapped[str | None] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), nullable=False, server_default="running")
    total_rows: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    created_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    updated_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    error_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    errors: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxEvent(Base):
    """A record-change event, written in the same transaction as the change."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "next_attempt_at", postgresql_where=text("published_at IS NULL")),
        CheckConstraint("operation IN ('created','updated','deleted')", name="operation_valid"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), nullable=False, unique=True, server_default=text("gen_random_uuid()")
    )
    organization_id: Mapped[uuid.UUID] = org_fk()
    entity_type: Mapped[str] = mapped_column(String(30), nullable=False)
    entity_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    operation: Mapped[str] = mapped_column(String(10), nullable=False)
    changed_fields: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    entity_version: Mapped[int] = mapped_column(Integer, nullable=False)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )
    last_error: Mapped[str | None] = mapped_column(Text)


TENANT_TABLES = (
    "users",
    "api_keys",
    "companies",
    "contacts",
    "pipelines",
    "pipeline_stages",
    "deals",
    "deal_stage_history",
    "activities",
    "tasks",
    "custom_property_definitions",
    "import_jobs",
    "outbox",
)
