"""Set-based SQL for an import: one statement per batch, one parameter per list."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Integer, String, Table, Text, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session


def any_of(column: ColumnElement[Any], values: Sequence[Any], item_type: Any = Text) -> ColumnElement[bool]:
    """``column = ANY(:array)``: one parameter that Postgres hashes, unlike an IN list of thousands."""
    return column == any_(bindparam(None, list(values), type_=ARRAY(item_type)))


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT ... SELECT * FROM unnest(<one array per column>)``: one statement for the whole batch,
    about twice as fast as an executemany of single-row INSERTs (COPY is refused on RLS tables)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    columns = list(rows[0])
    arrays: dict[str, list[Any]] = {}
    casts = []
    for position, name in enumerate(columns):
        column_type = table.c[name].type
        values = [row[name] for row in rows]
        if isinstance(column_type, JSONB):
            values = [None if v is None else json.dumps(v) for v in values]
        arrays[f"a{position}"] = values
        casts.append(f"CAST(:a{position} AS {column_type.compile(dialect=dialect)}[])")
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT * FROM unnest({', '.join(casts)})"
    )
    session.execute(text(statement), arrays)


def column_limits(table: Table, columns: Iterable[str]) -> list[tuple[str, str, int]]:
    """(column, "length" or "integer", limit): what the schemas let through but the column refuses."""
    limits = []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, String) and column_type.length:
            limits.append((name, "length", column_type.length))
        elif isinstance(column_type, Integer):
            limits.append((name, "integer", 2**31 - 1))
    return limits
