"""Rows of the demo data written in bulk: validated by the API's input schemas, each with its
change event, and timestamps moved into the past where no API lets a client set them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from okyaku.events.outbox import record_changes


def bulk_create(
    session: Session,
    entity_type: str,
    model: Any,
    inputs: Sequence[BaseModel],
    derive: Callable[[dict[str, Any]], dict[str, Any]] = lambda values: values,
) -> list[Any]:
    """Many records of one kind, validated by the API's own input schema, inserted in one batch,
    each with its "created" change event as the service writes it: the outbox rows go in one INSERT
    per set of fields given (``record_changes``), not one round trip per record."""
    values = [item.model_dump() for item in inputs]
    records = [model(**derive(dict(v))) for v in values]
    session.add_all(records)
    session.flush()
    by_fields: dict[tuple[str, ...], list[tuple[Any, int]]] = {}
    for record, fields in zip(records, values, strict=True):
        given = tuple(sorted(name for name, value in fields.items() if value is not None))
        by_fields.setdefault(given, []).append((record.id, record.version))
    for given, changes in by_fields.items():
        record_changes(session, entity_type=entity_type, changes=changes, operation="created", changed_fields=given)
    return records


def backdate(session: Session, model: Any, rows: Sequence[dict[str, Any]], columns: dict[str, str]) -> None:
    """Set timestamp columns by primary key (executemany); a Core UPDATE leaves ``version`` alone."""
    table = cast(Table, model.__table__)
    session.execute(
        update(table)
        .where(table.c.id == bindparam("row_id"))
        .values({column: bindparam(key) for column, key in columns.items()}),
        list(rows),
    )


# The job titles of the demo's contacts (okyaku.local.demo and demo_history).
JOB_TITLES = [
    "CEO",
    "CTO",
    "VP Sales",
    "Head of Operations",
    "IT Director",
    "Procurement Manager",
    "Marketing Director",
    "CFO",
    "Product Manager",
    "Customer Success Lead",
]
