"""Query-string filters of the list endpoints (names match ``EntitySpec.filters``)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from okyaku.crm.listing import ListParams
from okyaku.crm.schemas import ActivityType, LeadStatus, LifecycleStage, TaskPriority, TaskStatus


class Filters(BaseModel):
    """Paging, sorting and search common to every list; unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, description="next_cursor of the previous page")
    sort: str | None = Field(default=None, description="A field name; prefix '-' for descending")
    q: str | None = Field(default=None, max_length=200, description="Text search (word prefixes)")

    def list_params(self) -> ListParams:
        return ListParams(limit=self.limit, cursor=self.cursor, sort=self.sort, q=self.q)

    def conditions(self) -> dict[str, Any]:
        return self.model_dump(exclude={"limit", "cursor", "sort", "q"})


class CompanyFilters(Filters):
    owner_id: uuid.UUID | None = None
    industry: str | None = None
    country: str | None = None
    domain: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None


class ContactFilters(Filters):
    owner_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    lifecycle_stage: LifecycleStage | None = None
    lead_status: LeadStatus | None = None
    source: str | None = None
    email: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None


class PipelineFilters(Filters):
    pass


class DealFilters(Filters):
    owner_id: uuid.UUID | None = None
    pipeline_id: uuid.UUID | None = None
    stage_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    expected_close_after: date | None = None
    expected_close_before: date | None = None
    closed_after: datetime | None = None
    closed_before: datetime | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class ActivityFilters(Filters):
    type: ActivityType | None = None
    owner_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None


class TaskFilters(Filters):
    status: TaskStatus | None = None
    priority: TaskPriority | None = None
    assignee_id: uuid.UUID | None = None
    contact_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    due_after: datetime | None = None
    due_before: datetime | None = None
