"""A validated :class:`QueryPlan` → SQLAlchemy Core statements. No SQL text comes from a model:
every identifier is looked up in the catalogue, every value is a bound parameter.

The statements select hidden columns beside the asked-for ones (``_id``/``_label`` of each row,
``_ref_<relation>`` ids of related records) so that answers can cite every record they show.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, and_, case, false, func, not_, or_, select, true
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from okyaku.chat.catalogue import CATALOGUE, DATE_KINDS, EntitySpec, ResolvedField, resolve_field
from okyaku.chat.dates import Period, parse_point, resolve_range, resolve_relative
from okyaku.chat.plan import Aggregation, DateRange, Filter, QueryPlan, RelativeDate
from okyaku.db.models import Base

DEFAULT_LIST_LIMIT = 25

# The predictions' current scores, named here as a lightweight table so chat need not import
# the predictions package (and its ML dependencies).
_CURRENT_PREDICTIONS = sa_table(
    "current_predictions", sa_column("target"), sa_column("entity_id"), sa_column("score"), sa_column("organization_id")
)
_LAST_ACTIVITY_LINK = {"companies": "company_id", "contacts": "contact_id", "deals": "deal_id"}


@dataclass(frozen=True)
class OutputColumn:
    name: str
    kind: str
    hidden: bool = False


@dataclass(frozen=True)
class CitationSource:
    """Where in a result row a cited record's id and label are."""

    entity_type: str
    id_column: str
    label_column: str


@dataclass
class CompiledPlan:
    statement: Select[Any]
    columns: list[OutputColumn]
    citations: list[CitationSource]
    count_statement: Select[Any] | None = None  # listings: how many rows match in all
    totals_statement: Select[Any] | None = None
    totals_names: list[str] = field(default_factory=list)
    limit: int = DEFAULT_LIST_LIMIT


@dataclass
class _Scope:
    """The FROM clause being built: the base table and one outer join per relation used."""

    entity: EntitySpec
    base: FromClause
    zone: ZoneInfo
    today: date
    joins: dict[str, FromClause] = field(default_factory=dict)
    # computed fields joined once (not correlated per row): key -> (derived table, ON clause)
    computed: dict[str, tuple[FromClause, Any]] = field(default_factory=dict)

    def source(self, resolved: ResolvedField) -> FromClause:
        if resolved.relation is None:
            return self.base
        name = resolved.relation.name
        if name not in self.joins:
            self.joins[name] = _table(resolved.entity.table).alias(f"rel_{name}")
        return self.joins[name]

    def computed_join(self, key: str, build: Callable[[str], tuple[FromClause, Any]]) -> FromClause:
        if key not in self.computed:
            self.computed[key] = build(f"cf_{len(self.computed)}")
        return self.computed[key][0]

    def from_clause(self) -> FromClause:
        clause: FromClause = self.base
        for name, joined in self.joins.items():
            relation = self.entity.relations[name]
            clause = clause.outerjoin(joined, joined.c.id == self.base.c[relation.column])
        for joined, on in self.computed.values():
            clause = clause.outerjoin(joined, on)
        return clause


def scope_for(entity: str, *, zone: ZoneInfo | None = None, today: date | None = None) -> _Scope:
    """A FROM clause on ``entity`` alone, for lookups outside a plan."""
    spec = CATALOGUE[entity]
    return _Scope(spec, _table(spec.table), zone or ZoneInfo("UTC"), today or date.today())


def _table(name: str) -> Any:
    return Base.metadata.tables[name]


def _by_id(table: str, alias: str, column: Any) -> tuple[FromClause, Any]:
    joined = _table(table).alias(alias)
    return joined, joined.c.id == column


def field_expression(scope: _Scope, resolved: ResolvedField) -> ColumnElement[Any]:
    source = scope.source(resolved)
    spec, entity = resolved.spec, resolved.entity
    if not spec.computed:
        return source.c[spec.name]
    if spec.name == "name" and entity.name == "contacts":
        return func.nullif(func.concat_ws(" ", source.c.first_name, source.c.last_name), "")
    key = f"{getattr(source, 'name', 'base')}.{spec.name}"
    if spec.name == "lead_score":

        def scores(alias: str) -> tuple[FromClause, Any]:
            current = select(_CURRENT_PREDICTIONS.c.entity_id, _CURRENT_PREDICTIONS.c.score).where(
                _CURRENT_PREDICTIONS.c.target == "lead_score"
            )
            derived = current.subquery(alias)
            return derived, derived.c.entity_id == source.c.id

        return scope.computed_join(key, scores).c.score
    if spec.name == "last_activity_at":
        link = _LAST_ACTIVITY_LINK[entity.name]

        def latest(alias: str) -> tuple[FromClause, Any]:
            activities = _table("activities")
            derived = (
                select(activities.c[link].label("key"), func.max(activities.c.occurred_at).label("value"))
                .where(activities.c[link].is_not(None))
                .group_by(activities.c[link])
                .subquery(alias)
            )
            return derived, derived.c.key == source.c.id

        return scope.computed_join(key, latest).c.value
    if spec.name == "account_id":
        contact = scope.computed_join(key + ".contact", lambda a: _by_id("contacts", a, source.c.contact_id))
        deal = scope.computed_join(key + ".deal", lambda a: _by_id("deals", a, source.c.deal_id))
        return func.coalesce(source.c.company_id, contact.c.company_id, deal.c.company_id)
    if spec.name == "status" and entity.name == "deals":
        stage = scope.computed_join(key, lambda a: _by_id("pipeline_stages", a, source.c.stage_id))
        return case((stage.c.is_won, "won"), (stage.c.is_lost, "lost"), else_="open")
    raise AssertionError(f"no compiler for computed field {entity.name}.{spec.name}")


def _period(scope: _Scope, value: Any) -> Period:
    if isinstance(value, RelativeDate):
        return resolve_relative(value, scope.today)
    if isinstance(value, DateRange):
        return resolve_range(value)
    day = parse_point(str(value))
    return Period(day, date.fromordinal(day.toordinal() + 1))


def _bounds(scope: _Scope, resolved: ResolvedField, period: Period) -> tuple[Any, Any]:
    if resolved.spec.kind == "date":
        return period.start, period.end
    return period.start_at(scope.zone), period.end_at(scope.zone)


def _date_condition(scope: _Scope, resolved: ResolvedField, expr: ColumnElement[Any], item: Filter) -> Any:
    start, end = _bounds(scope, resolved, _period(scope, item.value))

    def within() -> Any:
        parts = [c for c in (expr >= start if start is not None else None, expr < end if end is not None else None)]
        present = [p for p in parts if p is not None]
        return and_(*present) if present else expr.is_not(None)

    op = item.op
    if op in ("eq", "within"):
        return within()
    if op == "ne":
        return not_(within())
    edge = {"gt": end, "gte": start, "lt": start, "lte": end}[op]
    if edge is None:
        return true()
    return {"gt": expr >= edge, "gte": expr >= edge, "lt": expr < edge, "lte": expr < edge}[op]


def _lowered(resolved: ResolvedField, expr: ColumnElement[Any], value: Any) -> tuple[Any, Any]:
    if resolved.spec.kind in ("string", "text") and isinstance(value, str):
        return func.lower(expr), value.lower()
    if resolved.spec.kind == "uuid":
        return expr, uuid.UUID(str(value))
    return expr, value


def filter_condition(scope: _Scope, item: Filter) -> Any:
    resolved = resolve_field(scope.entity, item.field)
    expr = field_expression(scope, resolved)
    op, value = item.op, item.value
    if op == "is_null":
        return expr.is_(None)
    if op == "not_null":
        return expr.is_not(None)
    if resolved.spec.kind in DATE_KINDS and op not in ("in", "not_in"):
        condition = _date_condition(scope, resolved, expr, item)
    elif op == "contains":
        escaped = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        condition = expr.ilike(f"%{escaped}%", escape="\\")
    elif op in ("in", "not_in"):
        values = list(value) if isinstance(value, list) else [value]
        pairs = [_lowered(resolved, expr, v) for v in values]
        target = pairs[0][0] if pairs else expr
        member = target.in_([v for _, v in pairs]) if pairs else false()
        condition = member if op == "in" else not_(member)
    else:
        target, bound = _lowered(resolved, expr, value)
        condition = {
            "eq": target == bound,
            "ne": target != bound,
            "gt": target > bound,
            "gte": target >= bound,
            "lt": target < bound,
            "lte": target <= bound,
        }[op]
    return or_(condition, expr.is_(None)) if item.include_null else condition


def _aggregate(scope: _Scope, aggregation: Aggregation) -> ColumnElement[Any]:
    if aggregation.field is None:
        return func.count()
    expr = field_expression(scope, resolve_field(scope.entity, aggregation.field))
    if aggregation.function == "count":
        return func.count(expr)
    if aggregation.function == "sum":
        return func.coalesce(func.sum(expr), 0)
    if aggregation.function == "avg":
        return func.avg(expr)
    return func.min(expr) if aggregation.function == "min" else func.max(expr)


def label_expression(entity: EntitySpec, source: FromClause) -> ColumnElement[Any]:
    """What names a record of ``entity`` (a contact's full name, else email; an activity's subject)."""
    if entity.name == "contacts":
        return func.coalesce(
            func.nullif(func.concat_ws(" ", source.c.first_name, source.c.last_name), ""), source.c.email
        )
    if entity.name == "activities":
        return func.coalesce(source.c.subject, source.c.type)
    return source.c[entity.label]


def _ref_columns(scope: _Scope, paths: Sequence[str]) -> tuple[list[Any], list[OutputColumn], list[CitationSource]]:
    exprs: list[Any] = []
    outputs: list[OutputColumn] = []
    sources: list[CitationSource] = []
    seen: set[str] = set()
    for path in paths:
        resolved = resolve_field(scope.entity, path)
        if resolved.relation is None or resolved.relation.name in seen:
            continue
        seen.add(resolved.relation.name)
        joined = scope.source(resolved)
        id_name, label_name = f"_ref_{resolved.relation.name}", f"_reflabel_{resolved.relation.name}"
        exprs += [joined.c.id.label(id_name), label_expression(resolved.entity, joined).label(label_name)]
        outputs += [OutputColumn(id_name, "uuid", True), OutputColumn(label_name, "string", True)]
        sources.append(CitationSource(resolved.entity.entity_type, id_name, label_name))
    return exprs, outputs, sources


def compile_plan(
    plan: QueryPlan,
    *,
    today: date,
    zone: ZoneInfo,
    row_limit: int,
    restrict_ids: Sequence[uuid.UUID] | None = None,
) -> CompiledPlan:
    """Statements for a plan that :func:`okyaku.chat.catalogue.validate_plan` accepted."""
    entity = CATALOGUE[plan.entity]
    scope = _Scope(entity, _table(entity.table), zone, today)
    conditions = [filter_condition(scope, item) for item in plan.filters]
    if restrict_ids is not None:
        conditions.append(scope.base.c.id.in_(list(restrict_ids)) if restrict_ids else false())
    if plan.is_aggregate:
        return _compile_aggregate(plan, scope, conditions, row_limit)
    return _compile_listing(plan, scope, conditions, row_limit, restrict_ids)


def _compile_aggregate(plan: QueryPlan, scope: _Scope, conditions: list[Any], row_limit: int) -> CompiledPlan:
    selected: list[Any] = []
    columns: list[OutputColumn] = []
    by_name: dict[str, Any] = {}
    groups: list[Any] = []
    for group in plan.group_by:
        resolved = resolve_field(scope.entity, group.field)
        expr = field_expression(scope, resolved)
        kind = resolved.spec.kind
        if group.date_part:
            expr, kind = func.date_trunc(group.date_part, expr), "date"
        selected.append(expr.label(group.name))
        columns.append(OutputColumn(group.name, kind))
        by_name[group.name] = by_name[group.field] = expr
        groups.append(expr)
    ref_exprs, ref_outputs, citations = _ref_columns(scope, [g.field for g in plan.group_by if not g.date_part])
    for aggregation in plan.aggregations:
        expr = _aggregate(scope, aggregation)
        selected.append(expr.label(aggregation.name))
        columns.append(OutputColumn(aggregation.name, "number"))
        by_name[aggregation.name] = expr
    groups += [e.element for e in ref_exprs if e.name.startswith("_ref_")]
    statement = select(*selected, *ref_exprs).select_from(scope.from_clause()).where(*conditions)
    if groups:
        statement = statement.group_by(*groups, *[e.element for e in ref_exprs if e.name.startswith("_reflabel_")])
    orders = [
        by_name[o.field].desc().nulls_last() if o.direction == "desc" else by_name[o.field].asc().nulls_last()
        for o in plan.order_by
    ]
    if not orders and plan.group_by:
        orders = [by_name[plan.aggregations[0].name].desc().nulls_last()]
    limit = min(plan.limit or row_limit, row_limit)
    statement = statement.order_by(*orders, *groups).limit(limit)
    return CompiledPlan(statement, [*columns, *ref_outputs], citations, limit=limit)


def _compile_listing(
    plan: QueryPlan,
    scope: _Scope,
    conditions: list[Any],
    row_limit: int,
    restrict_ids: Sequence[uuid.UUID] | None,
) -> CompiledPlan:
    entity = scope.entity
    paths = list(plan.fields or entity.default_fields)
    selected: list[Any] = []
    columns: list[OutputColumn] = []
    for index, path in enumerate(paths):
        resolved = resolve_field(entity, path)
        selected.append(field_expression(scope, resolved).label(f"c{index}"))
        columns.append(OutputColumn(path, resolved.spec.kind))
    own = [scope.base.c.id.label("_id"), label_expression(entity, scope.base).label("_label")]
    ref_exprs, ref_outputs, ref_citations = _ref_columns(scope, paths)
    orders: list[Any] = []
    for order in plan.order_by:
        expr = field_expression(scope, resolve_field(entity, order.field))
        orders.append(expr.desc().nulls_last() if order.direction == "desc" else expr.asc().nulls_first())
    if not orders and restrict_ids:  # keep the search's ranking
        orders.append(case({rid: rank for rank, rid in enumerate(restrict_ids)}, value=scope.base.c.id))
    if not orders and "created_at" in entity.fields:
        orders.append(scope.base.c.created_at.desc())
    for aggregation in plan.totals:
        _aggregate(scope, aggregation)  # registers the joins it needs before the FROM is built
    limit = min(plan.limit or DEFAULT_LIST_LIMIT, row_limit)
    from_clause = scope.from_clause()
    statement = (
        select(*selected, *own, *ref_exprs)
        .select_from(from_clause)
        .where(*conditions)
        .order_by(*orders, scope.base.c.id)
        .limit(limit)
    )
    count_statement = select(func.count()).select_from(from_clause).where(*conditions)
    totals_statement = None
    if plan.totals:
        totals_statement = (
            select(*[_aggregate(scope, a).label(a.name) for a in plan.totals])
            .select_from(from_clause)
            .where(*conditions)
        )
    citations = [CitationSource(entity.entity_type, "_id", "_label"), *ref_citations]
    outputs = [*columns, OutputColumn("_id", "uuid", True), OutputColumn("_label", "string", True), *ref_outputs]
    return CompiledPlan(
        statement,
        outputs,
        citations,
        count_statement=count_statement,
        totals_statement=totals_statement,
        totals_names=[a.name for a in plan.totals],
        limit=limit,
    )
