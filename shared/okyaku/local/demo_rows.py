"""Rows of the demo data written in bulk: validated by the API's input schemas, each with its
change event, and timestamps moved into the past where no API lets a client set them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import Table, bindparam, update
from sqlalchemy.orm import Session

from okyaku.events import record_change


def bulk_create(
    session: Session,
    entity_type: str,
    model: Any,
    inputs: Sequence[BaseModel],
    derive: Callable[[dict[str, Any]], dict[str, Any]] = lambda values: values,
) -> list[Any]:
    """Many records of one kind, validated by the API's own input schema, inserted in one batch,
    each with its change event written by ``record_change`` exactly as the service writes it."""
    values = [item.model_dump() for item in inputs]
    records = [model(**derive(dict(v))) for v in values]
    session.add_all(records)
    session.flush()
    for record, fields in zip(records, values, strict=True):
        record_change(
            session,
            entity_type=entity_type,
            entity_id=record.id,
            operation="created",
            version=record.version,
            changed_fields=[name for name, value in fields.items() if value is not None],
        )
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
