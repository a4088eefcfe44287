"""What a plan may name: entities, their fields (with types), relations and computed fields.

:func:`validate_plan` checks a :class:`QueryPlan` against it and returns the plan with values
coerced (numbers, enum spellings, ISO dates), or :class:`PlanInvalid` whose message lists what
is valid, so the planner model can repair its plan in one round.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from okyaku.chat.dates import DateResolutionError, parse_point, resolve_range, resolve_relative
from okyaku.chat.plan import DateRange, Filter, QueryPlan, RelativeDate
from okyaku.db.models import ACTIVITY_TYPES, LEAD_STATUSES, LIFECYCLE_STAGES, TASK_PRIORITIES, TASK_STATUSES
from okyaku.errors import ValidationFailed

Kind = Literal["uuid", "string", "text", "number", "date", "datetime", "bool", "enum"]
DATE_KINDS = ("date", "datetime")
ORDERED_KINDS = ("number", "date", "datetime", "string", "enum")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    description: str = ""
    values: tuple[str, ...] = ()  # for enums
    computed: bool = False  # not a column: compiled from other tables (okyaku.chat.compile)


@dataclass(frozen=True)
class RelationSpec:
    name: str
    target: str  # an entity of the catalogue (or one of the relation-only tables)
    column: str  # the foreign key column on the source table


@dataclass(frozen=True)
class EntitySpec:
    name: str
    entity_type: str  # as citations and the rest of the project name it
    table: str
    label: str  # the field that names a record
    fields: dict[str, FieldSpec]
    relations: dict[str, RelationSpec] = field(default_factory=dict)
    default_fields: tuple[str, ...] = ()


def _fields(*specs: FieldSpec) -> dict[str, FieldSpec]:
    return {s.name: s for s in specs}


def _f(name: str, kind: Kind, description: str = "", values: tuple[str, ...] = (), computed: bool = False) -> FieldSpec:
    return FieldSpec(name, kind, description, values, computed)


_ID = _f("id", "uuid")
_CREATED = _f("created_at", "datetime", "when the record was created")
_UPDATED = _f("updated_at", "datetime")
_ACCOUNT = _f("account_id", "uuid", "the company of the record, or else of its contact or deal", computed=True)
_LAST_ACTIVITY = _f("last_activity_at", "datetime", "when the latest call/meeting/email/note happened", computed=True)

CATALOGUE: dict[str, EntitySpec] = {
    "companies": EntitySpec(
        "companies",
        "company",
        "companies",
        "name",
        _fields(
            _ID,
            _f("name", "string"),
            _f("domain", "string"),
            _f("industry", "string"),
            _f("employee_count", "number"),
            _f("annual_revenue", "number"),
            _f("country", "string"),
            _f("city", "string"),
            _f("description", "text"),
            _CREATED,
            _UPDATED,
            _LAST_ACTIVITY,
        ),
        {"owner": RelationSpec("owner", "users", "owner_id")},
        ("name", "industry", "country", "city"),
    ),
    "contacts": EntitySpec(
        "contacts",
        "contact",
        "contacts",
        "name",
        _fields(
            _ID,
            _f("name", "string", "first and last name", computed=True),
            _f("first_name", "string"),
            _f("last_name", "string"),
            _f("email", "string"),
            _f("phone", "string"),
            _f("job_title", "string"),
            _f("lifecycle_stage", "enum", values=LIFECYCLE_STAGES),
            _f("lead_status", "enum", values=LEAD_STATUSES),
            _f("source", "string"),
            _CREATED,
            _UPDATED,
            _f("lead_score", "number", "the current lead score (0-100) from the predictions", computed=True),
            _LAST_ACTIVITY,
        ),
        {
            "company": RelationSpec("company", "companies", "company_id"),
            "owner": RelationSpec("owner", "users", "owner_id"),
        },
        ("name", "email", "company.name", "lifecycle_stage"),
    ),
    "deals": EntitySpec(
        "deals",
        "deal",
        "deals",
        "name",
        _fields(
            _ID,
            _f("name", "string"),
            _f("amount", "number"),
            _f("currency", "string"),
            _f("expected_close_date", "date"),
            _f("closed_at", "datetime", "when the deal was won or lost"),
            _f("lost_reason", "text"),
            _f("stage_entered_at", "datetime"),
            _f("status", "enum", "open, won or lost (from the stage)", ("open", "won", "lost"), computed=True),
            _CREATED,
            _UPDATED,
            _LAST_ACTIVITY,
        ),
        {
            "company": RelationSpec("company", "companies", "company_id"),
            "contact": RelationSpec("contact", "contacts", "contact_id"),
            "stage": RelationSpec("stage", "pipeline_stages", "stage_id"),
            "pipeline": RelationSpec("pipeline", "pipelines", "pipeline_id"),
            "owner": RelationSpec("owner", "users", "owner_id"),
        },
        ("name", "company.name", "stage.name", "amount", "expected_close_date"),
    ),
    "activities": EntitySpec(
        "activities",
        "activity",
        "activities",
        "subject",
        _fields(
            _ID,
            _f("type", "enum", values=ACTIVITY_TYPES),
            _f("subject", "string"),
            _f("body", "text"),
            _f("occurred_at", "datetime"),
            _f("duration_minutes", "number"),
            _f("direction", "enum", values=("inbound", "outbound")),
            _CREATED,
            _ACCOUNT,
        ),
        {
            "contact": RelationSpec("contact", "contacts", "contact_id"),
            "company": RelationSpec("company", "companies", "company_id"),
            "deal": RelationSpec("deal", "deals", "deal_id"),
            "owner": RelationSpec("owner", "users", "owner_id"),
        },
        ("occurred_at", "type", "subject", "contact.name"),
    ),
    "tasks": EntitySpec(
        "tasks",
        "task",
        "tasks",
        "title",
        _fields(
            _ID,
            _f("title", "string"),
            _f("description", "text"),
            _f("due_date", "datetime"),
            _f("status", "enum", values=TASK_STATUSES),
            _f("priority", "enum", values=TASK_PRIORITIES),
            _f("completed_at", "datetime"),
            _CREATED,
        ),
        {
            "contact": RelationSpec("contact", "contacts", "contact_id"),
            "company": RelationSpec("company", "companies", "company_id"),
            "deal": RelationSpec("deal", "deals", "deal_id"),
            "assignee": RelationSpec("assignee", "users", "assignee_id"),
        },
        ("title", "due_date", "status", "priority"),
    ),
    "pipeline_stages": EntitySpec(
        "pipeline_stages",
        "pipeline_stage",
        "pipeline_stages",
        "name",
        _fields(
            _ID,
            _f("name", "string"),
            _f("position", "number"),
            _f("probability", "number"),
            _f("is_won", "bool"),
            _f("is_lost", "bool"),
        ),
        {"pipeline": RelationSpec("pipeline", "pipelines", "pipeline_id")},
        ("name", "position", "probability"),
    ),
    # Reachable only as relations (a deal's owner, a stage's pipeline).
    "users": EntitySpec("users", "user", "users", "name", _fields(_ID, _f("name", "string"), _f("email", "string"))),
    "pipelines": EntitySpec(
        "pipelines", "pipeline", "pipelines", "name", _fields(_ID, _f("name", "string"), _f("is_default", "bool"))
    ),
}
QUERYABLE = ("companies", "contacts", "deals", "activities", "tasks", "pipeline_stages")


class PlanInvalid(ValidationFailed):
    """The plan names something that does not exist or combines things that do not fit."""

    code = "plan_invalid"


@dataclass(frozen=True)
class ResolvedField:
    path: str
    entity: EntitySpec  # the entity the field belongs to (the relation's target for a.b)
    spec: FieldSpec
    relation: RelationSpec | None = None


def valid_fields(entity: EntitySpec) -> list[str]:
    names = list(entity.fields)
    for relation in entity.relations.values():
        target = CATALOGUE[relation.target]
        names += [f"{relation.name}.{name}" for name, spec in target.fields.items() if name != "id"]
    return names


def resolve_field(entity: EntitySpec, path: str) -> ResolvedField:
    parts = path.strip().split(".")
    if len(parts) == 1 and parts[0] in entity.fields:
        return ResolvedField(path, entity, entity.fields[parts[0]])
    if len(parts) == 2 and parts[0] in entity.relations:
        relation = entity.relations[parts[0]]
        target = CATALOGUE[relation.target]
        if parts[1] in target.fields:
            return ResolvedField(path, target, target.fields[parts[1]], relation)
    raise PlanInvalid(
        f"unknown field '{path}' on {entity.name}; valid fields: {', '.join(valid_fields(entity))}",
        details=[{"field": path, "message": f"not a field of {entity.name}", "type": "unknown_field"}],
    )


def _error(field_name: str, message: str, type_: str = "value_error") -> PlanInvalid:
    return PlanInvalid(message, details=[{"field": field_name, "message": message, "type": type_}])


def _coerce_scalar(resolved: ResolvedField, value: Any) -> Any:
    spec, path = resolved.spec, resolved.path
    if isinstance(value, (RelativeDate, DateRange)):
        if spec.kind not in DATE_KINDS:
            raise _error(path, f"'{path}' is not a date, so it cannot take a relative date")
        try:
            resolve_relative(value, date.today()) if isinstance(value, RelativeDate) else resolve_range(value)
        except DateResolutionError as error:
            raise _error(path, str(error)) from error
        return value
    if spec.kind == "number":
        if isinstance(value, bool):
            raise _error(path, f"'{path}' is a number, not {value!r}")
        try:
            return float(str(value).replace(",", "").strip().lstrip("$€£"))
        except ValueError as error:
            raise _error(path, f"'{path}' is a number, not {value!r}") from error
    if spec.kind in DATE_KINDS:
        if not isinstance(value, str):
            raise _error(path, f"'{path}' takes an ISO date or a relative date")
        try:
            parse_point(value)
        except DateResolutionError as error:
            raise _error(path, str(error)) from error
        return value
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
        raise _error(path, f"'{path}' is true or false, not {value!r}")
    if spec.kind == "enum":
        lowered = str(value).strip().lower().replace(" ", "_")
        if lowered not in spec.values:
            raise _error(path, f"'{value}' is not a valid {path}; valid values: {', '.join(spec.values)}")
        return lowered
    if spec.kind == "uuid":
        try:
            return str(uuid.UUID(str(value)))
        except ValueError as error:
            raise _error(path, f"'{path}' is a record id (a UUID), not {value!r}") from error
    return str(value)


def _check_filter(entity: EntitySpec, item: Filter) -> Filter:
    resolved = resolve_field(entity, item.field)
    kind, op, value = resolved.spec.kind, item.op, item.value
    if op in ("is_null", "not_null"):
        return item.model_copy(update={"value": None})
    if value is None:
        raise _error(item.field, f"the '{op}' filter on '{item.field}' needs a value (or use is_null/not_null)")
    if op == "within":
        if kind not in DATE_KINDS or not isinstance(value, (RelativeDate, DateRange, str)):
            raise _error(item.field, "'within' takes a date field and a relative date or date range")
        if isinstance(value, DateRange):
            try:
                resolve_range(value)
            except DateResolutionError as error:
                raise _error(item.field, str(error)) from error
        return item.model_copy(update={"value": _coerce_scalar(resolved, value)})
    if op in ("in", "not_in"):
        values = value if isinstance(value, list) else [value]
        if not values:
            raise _error(item.field, f"'{op}' needs at least one value")
        return item.model_copy(update={"value": [_coerce_scalar(resolved, v) for v in values]})
    if isinstance(value, list):
        raise _error(item.field, f"'{op}' takes one value; use 'in' for a list")
    if op == "contains" and kind not in ("string", "text"):
        raise _error(item.field, f"'contains' works on text fields; '{item.field}' is {kind}")
    if op in ("gt", "gte", "lt", "lte") and kind not in ORDERED_KINDS:
        raise _error(item.field, f"'{op}' does not apply to '{item.field}' ({kind})")
    if kind == "text" and op not in ("contains", "eq", "ne"):
        raise _error(item.field, f"'{item.field}' is free text: use 'contains'")
    return item.model_copy(update={"value": _coerce_scalar(resolved, value)})


def validate_plan(plan: QueryPlan, *, row_limit: int) -> QueryPlan:
    """The plan with coerced values, or :class:`PlanInvalid` naming the first problem."""
    if plan.entity not in QUERYABLE:
        raise _error("entity", f"unknown entity '{plan.entity}'; valid: {', '.join(QUERYABLE)}")
    entity = CATALOGUE[plan.entity]
    filters = [_check_filter(entity, f) for f in plan.filters]
    names: set[str] = set()
    if plan.is_aggregate:
        if plan.fields:
            raise _error("fields", "with aggregations, list the grouping fields in group_by, not fields")
        if plan.totals:
            raise _error("totals", "totals go with a listing, not with aggregations")
    for group in plan.group_by:
        resolved = resolve_field(entity, group.field)
        if group.date_part and resolved.spec.kind not in DATE_KINDS:
            raise _error(group.field, f"date_part needs a date field; '{group.field}' is {resolved.spec.kind}")
        if resolved.spec.kind == "text":
            raise _error(group.field, f"cannot group by free text '{group.field}'")
        names.add(group.name)
        names.add(group.field)
    if plan.group_by and not plan.aggregations:
        raise _error("aggregations", "group_by needs at least one aggregation (e.g. count)")
    for aggregation in [*plan.aggregations, *plan.totals]:
        if aggregation.field is None:
            if aggregation.function != "count":
                raise _error("aggregations", f"'{aggregation.function}' needs a field")
        else:
            kind = resolve_field(entity, aggregation.field).spec.kind
            if aggregation.function in ("sum", "avg") and kind != "number":
                raise _error(
                    aggregation.field, f"'{aggregation.function}' needs a number; '{aggregation.field}' is {kind}"
                )
            if aggregation.function in ("min", "max") and kind not in ("number", *DATE_KINDS):
                raise _error(aggregation.field, f"'{aggregation.function}' needs a number or date field")
        if aggregation.name in names:
            raise _error("aggregations", f"two columns would be called '{aggregation.name}'; give an alias")
        names.add(aggregation.name)
    for column in plan.fields:
        resolve_field(entity, column)
    for order in plan.order_by:
        if plan.is_aggregate:
            if order.field not in names:
                raise _error(
                    order.field,
                    f"order an aggregation by one of its columns: {', '.join(sorted(names))}",
                )
        else:
            spec = resolve_field(entity, order.field).spec
            if spec.kind == "text":
                raise _error(order.field, f"cannot sort by free text '{order.field}'")
    limit = min(plan.limit, row_limit) if plan.limit else None
    return plan.model_copy(update={"filters": filters, "limit": limit})
