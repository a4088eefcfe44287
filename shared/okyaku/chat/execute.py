"""Run a compiled plan: one READ ONLY transaction in the caller's organization (RLS), with a
statement timeout, the organization's time zone, and a row cap. Values come back JSON-ready."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from psycopg import errors as pg_errors
from sqlalchemy import exc, text
from sqlalchemy.orm import Session

from okyaku.chat.compile import CompiledPlan
from okyaku.db import Database
from okyaku.errors import OkyakuError


class QueryTooSlow(OkyakuError):
    status_code = 422
    code = "chat_query_timeout"


@dataclass
class DataTable:
    columns: list[str]
    rows: list[list[Any]]
    total: int | None = None  # listings: how many rows match in all (the rows are capped)
    totals: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"columns": self.columns, "rows": self.rows}
        if self.total is not None:
            out["total"] = self.total
        if self.totals:
            out["totals"] = self.totals
        return out


@dataclass(frozen=True)
class CitationOut:
    entity_type: str
    entity_id: str
    label: str

    def as_dict(self) -> dict[str, str]:
        return {"entity_type": self.entity_type, "entity_id": self.entity_id, "label": self.label}


@dataclass
class PlanResult:
    data: DataTable
    citations: list[CitationOut]
    truncated: bool = False


def json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(round(value, 2))
    if isinstance(value, float):
        return int(value) if value.is_integer() else round(value, 2)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@contextmanager
def read_only(db: Database, organization_id: uuid.UUID, *, timeout_ms: int, zone: str) -> Iterator[Session]:
    """A transaction that cannot write, sees one organization, and stops a slow statement."""
    with db.organization_scope(organization_id) as session:
        session.execute(text("SET TRANSACTION READ ONLY"))
        session.execute(text("SELECT set_config('statement_timeout', :t, true)"), {"t": str(int(timeout_ms))})
        session.execute(text("SELECT set_config('TimeZone', :z, true)"), {"z": zone})
        yield session


def execute_compiled(session: Session, compiled: CompiledPlan) -> PlanResult:
    try:
        result = session.execute(compiled.statement)
        names = list(result.keys())
        raw = [list(row) for row in result]
        total = session.execute(compiled.count_statement).scalar_one() if compiled.count_statement is not None else None
        totals: dict[str, Any] = {}
        if compiled.totals_statement is not None:
            row = session.execute(compiled.totals_statement).one()
            totals = {name: json_value(value) for name, value in zip(compiled.totals_names, row, strict=True)}
    except exc.OperationalError as error:
        if isinstance(error.orig, pg_errors.QueryCanceled):
            raise QueryTooSlow(
                "that question needs a query that runs too long; narrow it down (a period, a stage, an owner)"
            ) from error
        raise
    visible = [i for i, c in enumerate(compiled.columns) if not c.hidden]
    index = {name: i for i, name in enumerate(names)}
    position = {c.name: i for i, c in enumerate(compiled.columns)}
    rows = [[json_value(r[i]) for i in visible] for r in raw]
    citations: list[CitationOut] = []
    seen: set[tuple[str, str]] = set()
    for r in raw:
        for source in compiled.citations:
            entity_id = r[index.get(source.id_column, position[source.id_column])]
            if entity_id is None:
                continue
            key = (source.entity_type, str(entity_id))
            if key in seen:
                continue
            seen.add(key)
            label = r[index.get(source.label_column, position[source.label_column])]
            citations.append(CitationOut(source.entity_type, str(entity_id), str(label or entity_id)))
    data = DataTable([compiled.columns[i].name for i in visible], rows, total, totals)
    return PlanResult(data, citations, truncated=total is not None and total > len(rows))


def scalar_rows(session: Session, statement: Any) -> Sequence[Any]:
    return list(session.execute(statement))
