"""What tools need to know about CRM records: services, schemas and compact JSON views."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from okyaku.crm import filters as f
from okyaku.crm.entities import ENTITIES
from okyaku.crm.records import RecordService

EntityType = Literal["contact", "company", "deal", "activity", "task"]
ENTITY_TYPES: tuple[str, ...] = ("contact", "company", "deal", "activity", "task")

# The CRUD API's registry (the same services), so every applied change records its change event.
SERVICES: dict[str, RecordService] = {name: ENTITIES[name].service for name in ENTITY_TYPES}
OUT_MODELS: dict[str, type[BaseModel]] = {name: ENTITIES[name].out_model for name in ENTITY_TYPES}
CREATE_MODELS: dict[str, type[BaseModel]] = {name: ENTITIES[name].create_model for name in ENTITY_TYPES}
UPDATE_MODELS: dict[str, type[BaseModel]] = {name: ENTITIES[name].update_model for name in ENTITY_TYPES}
FILTER_MODELS: dict[str, type[f.Filters]] = {name: ENTITIES[name].filter_model for name in ENTITY_TYPES}
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
