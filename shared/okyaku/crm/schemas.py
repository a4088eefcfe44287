"""Request and response contracts of the CRM API (pydantic v2)."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

LifecycleStage = Literal["subscriber", "lead", "mql", "sql", "opportunity", "customer", "evangelist", "churned"]
LeadStatus = Literal["new", "open", "in_progress", "attempted", "connected", "qualified", "unqualified", "bad_timing"]
ActivityType = Literal["call", "meeting", "email", "note"]
TaskStatus = Literal["open", "in_progress", "done", "cancelled"]
TaskPriority = Literal["low", "normal", "high"]
DealStatus = Literal["open", "won", "lost"]
T = TypeVar("T")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError("not a valid email address")
    return value


Email = Annotated[
    str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=320), AfterValidator(_check_email)
]
Currency = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Z]{3}$")]
Money = Annotated[Decimal, Field(ge=0, max_digits=16, decimal_places=2)]
CustomProperties = dict[str, str | int | float | bool | None]


class Input(BaseModel):
    """Unknown fields are refused, so a typo is a 422 rather than silently ignored."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class Patch(Input):
    """Fields sent are applied (null clears); ``version``, when given, must match the stored one."""

    version: int | None = Field(default=None, ge=1, description="Optimistic lock: the version you read")


class RecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, defer_build=True)

    id: uuid.UUID
    version: int
    external_id: str | None
    custom_properties: dict[str, Any]
    created_at: datetime
    updated_at: datetime


# --- companies -------------------------------------------------------------------------------


class CompanyFields(Input):
    domain: ShortText | None = None
    industry: ShortText | None = None
    employee_count: int | None = Field(default=None, ge=0)
    annual_revenue: Money | None = None
    country: ShortText | None = None
    city: ShortText | None = None
    description: str | None = Field(default=None, max_length=20_000)
    owner_id: uuid.UUID | None = None
    external_id: ShortText | None = None
    custom_properties: CustomProperties = Field(default_factory=dict)


class CompanyCreate(CompanyFields):
    name: Name


class CompanyUpdate(CompanyFields, Patch):
    name: Name | None = None
    custom_properties: CustomProperties | None = None  # type: ignore[assignment]


class CompanyOut(RecordOut):
    name: str
    domain: str | None
    industry: str | None
    employee_count: int | None
    annual_revenue: Decimal | None
    country: str | None
    city: str | None
    description: str | None
    owner_id: uuid.UUID | None


# --- contacts --------------------------------------------------------------------------------


class ContactFields(Input):
    first_name: ShortText | None = None
    last_name: ShortText | None = None
    email: Email | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)] | None = None
    job_title: ShortText | None = None
    company_id: uuid.UUID | None = None
    lead_status: LeadStatus | None = None
    source: ShortText | None = None
    owner_id: uuid.UUID | None = None
    external_id: ShortText | None = None
    custom_properties: CustomProperties = Field(default_factory=dict)


class ContactCreate(ContactFields):
    lifecycle_stage: LifecycleStage = "lead"

    @model_validator(mode="after")
    def _has_identity(self) -> ContactCreate:
        if not (self.first_name or self.last_name or self.email):
            raise ValueError("a contact needs at least one of first_name, last_name or email")
        return self


class ContactUpdate(ContactFields, Patch):
    lifecycle_stage: LifecycleStage | None = None
    custom_properties: CustomProperties | None = None  # type: ignore[assignment]


class ContactOut(RecordOut):
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    job_title: str | None
    company_id: uuid.UUID | None
    lifecycle_stage: LifecycleStage
    lead_status: str | None
    source: str | None
    owner_id: uuid.UUID | None


# --- pipelines -------------------------------------------------------------------------------


class StageIn(Input):
    id: uuid.UUID | None = Field(default=None, description="Keep an existing stage (omit to add one)")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    probability: float = Field(ge=0, le=1)
    is_won: bool = False
    is_lost: bool = False

    @model_validator(mode="after")
    def _won_xor_lost(self) -> StageIn:
        if self.is_won and self.is_lost:
            raise ValueError("a stage cannot be both won and lost")
        return self


def _check_stages(stages: list[StageIn] | None) -> None:
    if stages is None:
        return
    names = [s.name.lower() for s in stages]
    if len(set(names)) != len(names):
        raise ValueError("stage names must be unique within a pipeline")


class PipelineCreate(Input):
    name: Name
    is_default: bool = False
    external_id: ShortText | None = None
    custom_properties: CustomProperties = Field(default_factory=dict)
    stages: list[StageIn] = Field(min_length=1, max_length=50, description="In pipeline order")

    @model_validator(mode="after")
    def _unique(self) -> PipelineCreate:
        _check_stages(self.stages)
        return self


class PipelineUpdate(Patch):
    name: Name | None = None
    is_default: bool | None = None
    external_id: ShortText | None = None
    custom_properties: CustomProperties | None = None
    stages: list[StageIn] | None = Field(
        default=None, min_length=1, max_length=50, description="The full new stage list, in order"
    )

    @model_validator(mode="after")
    def _unique(self) -> PipelineUpdate:
        _check_stages(self.stages)
        return self


class StageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    name: str
    position: int
    probability: float
    is_won: bool
    is_lost: bool


class PipelineOut(RecordOut):
    name: str
    is_default: bool
    stages: list[StageOut]


# --- deals -----------------------------------------------------------------------------------


class DealFields(Input):
    amount: Money | None = None
    currency: Currency | None = None
    expected_close_date: date | None = None
    closed_at: datetime | None = None
    lost_reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    won_reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    owner_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    external_id: ShortText | None = None
    custom_properties: CustomProperties = Field(default_factory=dict)


class DealCreate(DealFields):
    name: Name
    pipeline_id: uuid.UUID | None = Field(default=None, description="Defaults to the default pipeline")
    stage_id: uuid.UUID | None = Field(default=None, description="Defaults to the pipeline's first stage")


class DealUpdate(DealFields, Patch):
    name: Name | None = None
    pipeline_id: uuid.UUID | None = None
    stage_id: uuid.UUID | None = None
    custom_properties: CustomProperties | None = None  # type: ignore[assignment]


class DealOut(RecordOut):
    name: str
    pipeline_id: uuid.UUID
    stage_id: uuid.UUID
    status: DealStatus
    amount: Decimal | None
    currency: str
    expected_close_date: date | None
    closed_at: datetime | None
    lost_reason: str | None
    won_reason: str | None
    stage_entered_at: datetime
    owner_id: uuid.UUID | None
    company_id: uuid.UUID | None
    contact_id: uuid.UUID | None


class StageChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    from_stage_id: uuid.UUID | None
    to_stage_id: uuid.UUID
    changed_at: datetime
    changed_by: uuid.UUID | None


# --- activities ------------------------------------------------------------------------------


class ActivityFields(Input):
    subject: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None = None
    body: str | None = Field(default=None, max_length=100_000)
    occurred_at: datetime | None = None
    duration_minutes: int | None = Field(default=None, ge=0, le=24 * 60)
    direction: Literal["inbound", "outbound"] | None = None
    owner_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    external_id: ShortText | None = None
    custom_properties: CustomProperties = Field(default_factory=dict)


class ActivityCreate(ActivityFields):
    type: ActivityType


class ActivityUpdate(ActivityFields, Patch):
    type: ActivityType | None = None
    custom_properties: CustomProperties | None = None  # type: ignore[assignment]


class ActivityOut(RecordOut):
    type: ActivityType
    subject: str | None
    body: str | None
    occurred_at: datetime
    duration_minutes: int | None
    direction: str | None
    owner_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    company_id: uuid.UUID | None
    deal_id: uuid.UUID | None
    message_id: str | None = None


# --- tasks -----------------------------------------------------------------------------------


class TaskFields(Input):
    description: str | None = Field(default=None, max_length=20_000)
    due_date: datetime | None = None
    assignee_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    external_id: ShortText | None = None
    custom_properties: CustomProperties = Field(default_factory=dict)


class TaskCreate(TaskFields):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
    status: TaskStatus = "open"
    priority: TaskPriority = "normal"


class TaskUpdate(TaskFields, Patch):
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None = None
    status: TaskStatus | None = None
    priority: TaskPriority | None = None
    custom_properties: CustomProperties | None = None  # type: ignore[assignment]


class TaskOut(RecordOut):
    title: str
    description: str | None
    due_date: datetime | None
    status: TaskStatus
    priority: TaskPriority
    completed_at: datetime | None
    assignee_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    company_id: uuid.UUID | None
    deal_id: uuid.UUID | None


# --- listing ---------------------------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page; null at the end")
