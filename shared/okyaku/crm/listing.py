"""Listing records: keyset (cursor) pagination, sorting, filters and text search."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, cast, func, literal, tuple_
from sqlalchemy.orm import InstrumentedAttribute

from okyaku.errors import ValidationFailed, field_error


@dataclass(frozen=True)
class SortField:
    """A sortable column; ``null_as`` stands in for NULL so that keyset comparison stays total."""

    column: InstrumentedAttribute[Any]
    null_as: Any = None

    def expression(self) -> ColumnElement[Any]:
        if self.null_as is None:
            return self.column.expression
        return func.coalesce(self.column, cast(literal(self.null_as), self.column.type))


@dataclass(frozen=True)
class ListParams:
    limit: int = 50
    cursor: str | None = None
    sort: str | None = None
    q: str | None = None


def encode_cursor(sort: str, value: Any, row_id: uuid.UUID) -> str:
    raw = json.dumps([sort, None if value is None else str(value), str(row_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def invalid_cursor() -> ValidationFailed:
    return ValidationFailed("invalid cursor", details=[field_error("cursor", "not a cursor returned by this API")])


def decode_cursor(cursor: str) -> tuple[str, str | None, uuid.UUID]:
    """``(sort, value, id)`` of a cursor made by :func:`encode_cursor`; 422 for anything else.

    The element types are checked here: a cursor is client input, and a number where a string
    belongs would otherwise reach SQL as a value of another type.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        sort, value, row_id = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(sort, str) or not (value is None or isinstance(value, str)) or not isinstance(row_id, str):
            raise TypeError("cursor elements of the wrong type")
        return sort, value, uuid.UUID(row_id)
    except (ValueError, TypeError) as error:
        raise invalid_cursor() from error


def text_query(q: str) -> str | None:
    """Every word must match as a prefix: 'acm sal' finds 'Acme Sales'."""
    words = re.findall(r"[\w@.+-]+", q.lower())
    if not words:
        return None
    return " & ".join("'" + w.replace("'", "''") + "':*" for w in words[:16])


def apply_listing(
    statement: Select[Any],
    *,
    id_column: InstrumentedAttribute[Any],
    search_column: InstrumentedAttribute[Any] | None,
    sort_fields: Mapping[str, SortField],
    default_sort: str,
    params: ListParams,
) -> tuple[Select[Any], str, SortField]:
    sort = params.sort or default_sort
    descending = sort.startswith("-")
    name = sort.lstrip("-")
    if name not in sort_fields:
        allowed = ", ".join(sorted(sort_fields))
        raise ValidationFailed(
            f"cannot sort by {name!r}",
            details=[field_error("sort", f"one of {allowed}, optionally prefixed with '-'")],
        )
    field = sort_fields[name]
    expression = field.expression()
    if params.q and search_column is not None:
        tsquery = text_query(params.q)
        if tsquery:
            statement = statement.where(search_column.op("@@")(func.to_tsquery("simple", tsquery)))
    if params.cursor:
        cursor_sort, value, last_id = decode_cursor(params.cursor)
        if cursor_sort != sort:
            raise ValidationFailed(
                "the cursor belongs to another sort order",
                details=[field_error("cursor", f"this cursor was made for sort={cursor_sort}")],
            )
        boundary = tuple_(cast(literal(value), expression.type), literal(last_id))
        keys = tuple_(expression, id_column)
        statement = statement.where(keys < boundary if descending else keys > boundary)
    if descending:
        statement = statement.order_by(expression.desc(), id_column.desc())
    else:
        statement = statement.order_by(expression.asc(), id_column.asc())
    return statement.limit(params.limit + 1), sort, field
