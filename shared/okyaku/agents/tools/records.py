"""What tools need to know about CRM records: services, schemas and compact JSON views."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from okyaku.crm import filters as f
from okyaku.crm import schemas as s
from okyaku.crm.pipelines import DealService
from okyaku.crm.records import (
    ACTIVITY_SPEC,
    COMPANY_SPEC,
    CONTACT_SPEC,
    TASK_SPEC,
    ActivityService,
    RecordService,
    TaskService,
)

EntityType = Literal["contact", "company", "deal", "activity", "task"]
ENTITY_TYPES: tuple[str, ...] = ("contact", "company", "deal", "activity", "task")

# The same service classes as the CRUD API, so every applied change records its change event.
SERVICES: dict[str, RecordService] = {
    "company": RecordService(COMPANY_SPEC),
    "contact": RecordService(CONTACT_SPEC),
    "deal": DealService(),
    "activity": ActivityService(ACTIVITY_SPEC),
    "task": TaskService(TASK_SPEC),
}
OUT_MODELS: dict[str, type[BaseModel]] = {
    "company": s.CompanyOut,
    "contact": s.ContactOut,
    "deal": s.DealOut,
    "activity": s.ActivityOut,
    "task": s.TaskOut,
}
CREATE_MODELS: dict[str, type[BaseModel]] = {
    "company": s.CompanyCreate,
    "contact": s.ContactCreate,
    "deal": s.DealCreate,
    "activity": s.ActivityCreate,
    "task": s.TaskCreate,
}
UPDATE_MODELS: dict[str, type[BaseModel]] = {
    "company": s.CompanyUpdate,
    "contact": s.ContactUpdate,
    "deal": s.DealUpdate,
    "activity": s.ActivityUpdate,
    "task": s.TaskUpdate,
}
FILTER_MODELS: dict[str, type[f.Filters]] = {
    "company": f.CompanyFilters,
    "contact": f.ContactFilters,
    "deal": f.DealFilters,
    "activity": f.ActivityFilters,
    "task": f.TaskFilters,
}
_NOISE = {"created_at", "updated_at", "external_id", "search_vector"}
BODY_CHARS = 800


def clip(text: str | None, limit: int = BODY_CHARS) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


def view(entity_type: str, record: Any, *, keep_times: bool = False) -> dict[str, Any]:
    """A record as the API shows it, without empty fields and bookkeeping, long text clipped."""
    data = OUT_MODELS[entity_type].model_validate(record).model_dump(mode="json")
    out: dict[str, Any] = {"type": entity_type}
    for key, value in data.items():
        if value is None or value == {} or (key in _NOISE and not keep_times):
            continue
        out[key] = clip(value) if isinstance(value, str) and key in ("body", "description") else value
    return out


def person_name(contact: Any) -> str:
    name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
    return name or contact.email or str(contact.id)
