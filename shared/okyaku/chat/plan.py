"""The typed query plan: what a question asks of the CRM, as data, never as SQL.

The LLM planner fills it by tool call; the deterministic fallback parser builds the same model.
:mod:`okyaku.chat.catalogue` validates it against what exists, :mod:`okyaku.chat.compile` turns
it into a SQLAlchemy Core statement. Field names may name a relation's field with a dot
(``company.name`` on a deal), or a computed field (``lead_score``, ``last_activity_at``,
``status``). Dates may be relative (``{"relative": "this_month"}``), resolved against the
service's clock.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Entity = Literal["companies", "contacts", "deals", "activities", "tasks", "pipeline_stages"]
ENTITIES: tuple[str, ...] = ("companies", "contacts", "deals", "activities", "tasks", "pipeline_stages")

Operator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "is_null", "not_null", "within"]
RelativeKind = Literal[
    "today",
    "yesterday",
    "tomorrow",
    "this_week",
    "last_week",
    "next_week",
    "this_month",
    "last_month",
    "next_month",
    "this_quarter",
    "last_quarter",
    "next_quarter",
    "this_year",
    "last_year",
    "next_year",
    "last_n_days",
    "next_n_days",
    "n_days_ago",
    "next_weekday",
    "last_weekday",
]
Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
AggregateFunction = Literal["count", "sum", "avg", "min", "max"]
DatePart = Literal["day", "week", "month", "quarter", "year"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RelativeDate(_Strict):
    """A period relative to today in the organization's time zone; it resolves to [start, end)."""

    relative: RelativeKind
    n: int | None = Field(default=None, ge=0, le=3660, description="days, for last_n_days/next_n_days/n_days_ago")
    weekday: Weekday | None = Field(default=None, description="for next_weekday/last_weekday")


class DateRange(_Strict):
    """An absolute period: ISO dates, ``end`` exclusive."""

    start: str | None = None
    end: str | None = None


Scalar = str | int | float | bool
FilterValue = RelativeDate | DateRange | Scalar | list[Scalar] | None


class Filter(_Strict):
    field: str = Field(description="a field of the entity, or relation.field (e.g. company.country)")
    op: Operator = "eq"
    value: FilterValue = None
    include_null: bool = Field(default=False, description="also keep rows where the field is empty")


class Aggregation(_Strict):
    function: AggregateFunction
    field: str | None = Field(default=None, description="the field to aggregate; none for count of rows")
    alias: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{0,40}$")

    @property
    def name(self) -> str:
        if self.alias:
            return self.alias
        return self.function if self.field is None else f"{self.function}_{self.field.replace('.', '_')}"


class OrderBy(_Strict):
    field: str = Field(description="a field, a group-by field, or an aggregation's name")
    direction: Literal["asc", "desc"] = "asc"


class GroupBy(_Strict):
    field: str
    date_part: DatePart | None = Field(default=None, description="truncate a date field to this period")

    @property
    def name(self) -> str:
        base = self.field.replace(".", "_")
        return f"{base}_{self.date_part}" if self.date_part else base


class SemanticStep(_Strict):
    """Keep only the records that semantic search finds for ``query`` (e.g. "why did we lose X")."""

    query: str = Field(min_length=1, max_length=500)
    limit: int = Field(default=10, ge=1, le=50)


class QueryPlan(_Strict):
    """One read of the CRM. Without aggregations it lists rows (``fields``); with them it groups."""

    entity: Entity
    filters: list[Filter] = Field(default_factory=list)
    fields: list[str] = Field(default_factory=list, description="columns to list; empty: the entity's defaults")
    aggregations: list[Aggregation] = Field(default_factory=list)
    group_by: list[GroupBy] = Field(default_factory=list)
    totals: list[Aggregation] = Field(
        default_factory=list, description="aggregates over all matching rows, shown beside a listing"
    )
    order_by: list[OrderBy] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1, le=1000)
    search: SemanticStep | None = None

    @property
    def is_aggregate(self) -> bool:
        return bool(self.aggregations)
