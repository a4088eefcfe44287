"""Custom properties: free-form JSONB values with a recorded type per organization."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from okyaku.db.models import CustomPropertyDefinition


def merge_custom_properties(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """A patch adds or replaces keys; a null value removes the key."""
    merged = dict(current)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def infer_value_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        try:
            date.fromisoformat(value[:10])
            return "date"
        except ValueError:
            return "string"
    return "string"


def register_custom_properties(
    session: Session, entity_type: str, properties: Mapping[str, Any], types: Mapping[str, str] | None = None
) -> None:
    """Record the type of each new property; the first type seen wins (import infers it from a column)."""
    rows = [
        {
            "entity_type": entity_type,
            "name": name,
            "data_type": (types or {}).get(name) or infer_value_type(value),
        }
        for name, value in properties.items()
        if value is not None
    ]
    if rows:
        session.execute(
            insert(CustomPropertyDefinition)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["organization_id", "entity_type", "name"])
        )
