"""Read tools: list and filter records, one record with its related records, semantic search,
analytics over a typed (never free SQL) query plan, and the lead score. Every read runs in a
read-only transaction of the caller's organization, so row-level security scopes it."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, ValidationError
from sqlalchemy import ColumnElement, Select, case, desc, func, literal, null, select
from sqlalchemy.orm import Session

from okyaku.agents.tooling import AgentTool, ToolArgs, ToolContext, ToolFailed, tool
from okyaku.agents.tools.records import FILTER_MODELS, SERVICES, EntityType, clip, person_name, view
from okyaku.crm.listing import ListParams
from okyaku.db.models import Activity, Company, Contact, Deal, DealStageHistory, Pipeline, PipelineStage, Task
from okyaku.errors import NotFound, ValidationFailed
from okyaku.validation import field_details

RELATED_LIMIT = 10
FilterValue = str | int | float | bool | None


def _filters(entity_type: str, raw: dict[str, Any]) -> Any:
    try:
        return FILTER_MODELS[entity_type].model_validate(raw)
    except ValidationError as error:
        raise ValidationFailed(
            f"invalid filters for {entity_type}", details=field_details(error, prefix="filters")
        ) from error


def _allowed_filters(entity_type: str) -> list[str]:
    paging = {"limit", "cursor", "sort", "q"}
    return sorted(k for k in FILTER_MODELS[entity_type].model_fields if k not in paging)


# --- search_records ------------------------------------------------------------------------------


class SearchRecordsArgs(ToolArgs):
    entity_type: EntityType
    query: str | None = Field(default=None, max_length=200, description="Words the records must contain")
    filters: dict[str, FilterValue] = Field(
        default_factory=dict,
        description="Exact filters, e.g. {'lifecycle_stage': 'lead'} or {'deal_id': '<uuid>'}",
    )
    sort: str | None = Field(default=None, description="A field name, '-' prefix for descending")
    limit: int = Field(default=10, ge=1, le=25)


@tool(
    "search_records",
    "List contacts, companies, deals, activities or tasks, with optional words to match and exact filters.",
    SearchRecordsArgs,
)
async def search_records(ctx: ToolContext, args: SearchRecordsArgs) -> dict[str, Any]:
    unknown = sorted(set(args.filters) - set(_allowed_filters(args.entity_type)))
    if unknown:
        raise ValidationFailed(
            f"unknown filters for {args.entity_type}",
            details=[
                {
                    "field": f"filters.{k}",
                    "message": f"allowed: {_allowed_filters(args.entity_type)}",
                    "type": "unknown",
                }
                for k in unknown
            ],
        )
    query = _filters(args.entity_type, dict(args.filters))
    params = ListParams(limit=args.limit, sort=args.sort, q=args.query)
    with ctx.read() as session:
        page = SERVICES[args.entity_type].list_page(session, params, query.conditions())
        rows = [view(args.entity_type, r) for r in page.rows]
    return {"entity_type": args.entity_type, "count": len(rows), "more": page.next_cursor is not None, "records": rows}


# --- get_record ----------------------------------------------------------------------------------


class GetRecordArgs(ToolArgs):
    entity_type: EntityType
    id: uuid.UUID


@tool(
    "get_record",
    "One record by id with its related records (company, contacts, deals, recent activities, open tasks, "
    "a deal's stages and stage history).",
    GetRecordArgs,
)
async def get_record(ctx: ToolContext, args: GetRecordArgs) -> dict[str, Any]:
    with ctx.read() as session:
        record = SERVICES[args.entity_type].get(session, args.id)
        out = view(args.entity_type, record, keep_times=True)
        related = _RELATED[args.entity_type](session, record, ctx.clock())
    return {"record": out, **related}


def _activities(session: Session, condition: ColumnElement[bool]) -> list[dict[str, Any]]:
    rows = session.scalars(select(Activity).where(condition).order_by(Activity.occurred_at.desc()).limit(RELATED_LIMIT))
    return [
        {
            "id": str(a.id),
            "type": a.type,
            "subject": a.subject,
            "body": clip(a.body, 500),
            "direction": a.direction,
            "occurred_at": a.occurred_at.isoformat(),
        }
        for a in rows
    ]


def _open_tasks(session: Session, condition: ColumnElement[bool]) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Task)
        .where(condition, Task.status.in_(("open", "in_progress")))
        .order_by(Task.due_date.asc().nulls_last())
        .limit(RELATED_LIMIT)
    )
    return [
        {
            "id": str(t.id),
            "title": t.title,
            "status": t.status,
            "priority": t.priority,
            "due_date": t.due_date.isoformat() if t.due_date else None,
        }
        for t in rows
    ]


def _deal_brief(deal: Deal) -> dict[str, Any]:
    return {
        "id": str(deal.id),
        "name": deal.name,
        "stage": deal.stage.name,
        "status": deal.status,
        "amount": str(deal.amount) if deal.amount is not None else None,
        "currency": deal.currency,
        "expected_close_date": deal.expected_close_date.isoformat() if deal.expected_close_date else None,
    }


def _contact_brief(contact: Contact) -> dict[str, Any]:
    return {
        "id": str(contact.id),
        "name": person_name(contact),
        "email": contact.email,
        "job_title": contact.job_title,
        "lifecycle_stage": contact.lifecycle_stage,
        "lead_status": contact.lead_status,
    }


def _company_brief(company: Company | None) -> dict[str, Any] | None:
    if company is None:
        return None
    return {"id": str(company.id), "name": company.name, "industry": company.industry, "domain": company.domain}


def _contact_related(session: Session, contact: Contact, _: datetime) -> dict[str, Any]:
    company = session.get(Company, contact.company_id) if contact.company_id else None
    deals = session.scalars(
        select(Deal).where(Deal.contact_id == contact.id).order_by(Deal.created_at.desc()).limit(RELATED_LIMIT)
    )
    return {
        "company": _company_brief(company),
        "deals": [_deal_brief(d) for d in deals],
        "recent_activities": _activities(session, Activity.contact_id == contact.id),
        "open_tasks": _open_tasks(session, Task.contact_id == contact.id),
    }


def _company_related(session: Session, company: Company, _: datetime) -> dict[str, Any]:
    contacts = session.scalars(
        select(Contact).where(Contact.company_id == company.id).order_by(Contact.created_at).limit(RELATED_LIMIT)
    )
    deals = session.scalars(
        select(Deal).where(Deal.company_id == company.id).order_by(Deal.created_at.desc()).limit(RELATED_LIMIT)
    )
    return {
        "contacts": [_contact_brief(c) for c in contacts],
        "deals": [_deal_brief(d) for d in deals],
        "recent_activities": _activities(session, Activity.company_id == company.id),
        "open_tasks": _open_tasks(session, Task.company_id == company.id),
    }


def _deal_related(session: Session, deal: Deal, now: datetime) -> dict[str, Any]:
    stages = session.scalars(
        select(PipelineStage).where(PipelineStage.pipeline_id == deal.pipeline_id).order_by(PipelineStage.position)
    ).all()
    names = {s.id: s.name for s in stages}
    history = session.scalars(
        select(DealStageHistory).where(DealStageHistory.deal_id == deal.id).order_by(DealStageHistory.id)
    )
    contact = session.get(Contact, deal.contact_id) if deal.contact_id else None
    company = session.get(Company, deal.company_id) if deal.company_id else None
    entered = deal.stage_entered_at
    return {
        "stage": deal.stage.name,
        "days_in_stage": round((now - entered).total_seconds() / 86400, 1) if entered else None,
        "pipeline_stages": [
            {
                "id": str(s.id),
                "name": s.name,
                "probability": float(s.probability),
                "is_won": s.is_won,
                "is_lost": s.is_lost,
            }
            for s in stages
        ],
        "stage_history": [
            {
                "from": names.get(h.from_stage_id) if h.from_stage_id else None,
                "to": names.get(h.to_stage_id, str(h.to_stage_id)),
                "changed_at": h.changed_at.isoformat(),
            }
            for h in history
        ],
        "company": _company_brief(company),
        "contact": _contact_brief(contact) if contact else None,
        "recent_activities": _activities(session, Activity.deal_id == deal.id),
        "open_tasks": _open_tasks(session, Task.deal_id == deal.id),
    }


def _linked(session: Session, record: Any, _: datetime) -> dict[str, Any]:
    contact = session.get(Contact, record.contact_id) if record.contact_id else None
    company = session.get(Company, record.company_id) if record.company_id else None
    deal = session.get(Deal, record.deal_id) if record.deal_id else None
    return {
        "contact": _contact_brief(contact) if contact else None,
        "company": _company_brief(company),
        "deal": _deal_brief(deal) if deal else None,
    }


_RELATED: dict[str, Callable[[Session, Any, datetime], dict[str, Any]]] = {
    "contact": _contact_related,
    "company": _company_related,
    "deal": _deal_related,
    "activity": _linked,
    "task": _linked,
}


# --- semantic_search -----------------------------------------------------------------------------


class SemanticSearchArgs(ToolArgs):
    query: str = Field(min_length=2, max_length=300, description="What to look for, in plain words")
    entity_types: list[Literal["company", "contact", "deal", "activity"]] | None = None
    limit: int = Field(default=8, ge=1, le=20)


@tool(
    "semantic_search",
    "Find records by meaning (e.g. 'customers worried about pricing'), across companies, contacts, deals "
    "and activities.",
    SemanticSearchArgs,
)
async def semantic_search(ctx: ToolContext, args: SemanticSearchArgs) -> dict[str, Any]:
    if not ctx.services.search_enabled:
        return {"available": False, "reason": "semantic search is disabled (AI_RAG_ENABLED=false)"}
    from okyaku.embeddings.models import EMBEDDABLE_TYPES

    search = ctx.services.semantic_search()
    with ctx.read() as session:
        result = search.search(
            session,
            ctx.organization_id,
            args.query,
            entity_types=args.entity_types or EMBEDDABLE_TYPES,
            limit=args.limit,
        )
    return {
        "available": True,
        "degraded": result.degraded,
        "hits": [
            {
                "entity_type": h.entity_type,
                "id": str(h.entity_id),
                "title": h.title,
                "snippet": h.snippet,
                "score": h.score,
            }
            for h in result.hits
        ],
    }


# --- analyze -------------------------------------------------------------------------------------

Metric = Literal["count", "sum", "avg", "min", "max"]
_MODELS: dict[str, Any] = {"deal": Deal, "contact": Contact, "company": Company, "activity": Activity, "task": Task}
_NUMERIC: dict[str, dict[str, Any]] = {
    "deal": {"amount": Deal.amount},
    "company": {"employee_count": Company.employee_count, "annual_revenue": Company.annual_revenue},
    "activity": {"duration_minutes": Activity.duration_minutes},
    "contact": {},
    "task": {},
}
_deal_status = case((PipelineStage.is_won, "won"), (PipelineStage.is_lost, "lost"), else_="open")


def _month(column: Any) -> ColumnElement[Any]:
    return func.to_char(func.date_trunc("month", column), "YYYY-MM")


_DIMENSIONS: dict[str, dict[str, Any]] = {
    "deal": {
        "stage": PipelineStage.name,
        "status": _deal_status,
        "pipeline": Pipeline.name,
        "owner": Deal.owner_id,
        "company": Company.name,
        "currency": Deal.currency,
        "created_month": _month(Deal.created_at),
        "close_month": _month(Deal.expected_close_date),
    },
    "contact": {
        "lifecycle_stage": Contact.lifecycle_stage,
        "lead_status": Contact.lead_status,
        "source": Contact.source,
        "owner": Contact.owner_id,
        "company": Company.name,
        "created_month": _month(Contact.created_at),
    },
    "company": {
        "industry": Company.industry,
        "country": Company.country,
        "city": Company.city,
        "owner": Company.owner_id,
        "created_month": _month(Company.created_at),
    },
    "activity": {
        "type": Activity.type,
        "direction": Activity.direction,
        "owner": Activity.owner_id,
        "occurred_month": _month(Activity.occurred_at),
    },
    "task": {
        "status": Task.status,
        "priority": Task.priority,
        "assignee": Task.assignee_id,
        "due_month": _month(Task.due_date),
    },
}


class AnalyzeArgs(ToolArgs):
    entity_type: EntityType
    metric: Metric = "count"
    field: str | None = Field(default=None, description="Numeric field for sum/avg/min/max, e.g. 'amount'")
    group_by: str | None = Field(default=None, description="e.g. 'stage', 'status', 'industry', 'created_month'")
    filters: dict[str, FilterValue] = Field(
        default_factory=dict, description="Exact filters as in search_records; deals also take 'status'"
    )
    limit: int = Field(default=20, ge=1, le=50)


@tool(
    "analyze",
    "Aggregate records (count, sum, avg, min, max of a numeric field), optionally grouped, with filters. "
    "Read-only; returns at most 50 groups.",
    AnalyzeArgs,
)
async def analyze(ctx: ToolContext, args: AnalyzeArgs) -> dict[str, Any]:
    statement, plan = _analysis_plan(args)
    with ctx.read(statement_timeout_ms=5_000) as session:
        rows = session.execute(statement).all()
    groups = [{"group": _plain(r[0]), "count": int(r[1]), "value": _plain(r[2])} for r in rows]
    if args.group_by is None:
        only = groups[0] if groups else {"count": 0, "value": None}
        return {"plan": plan, "count": only["count"], "value": only["value"]}
    return {"plan": plan, "groups": groups, "truncated": len(groups) >= args.limit}


def _analysis_plan(args: AnalyzeArgs) -> tuple[Select[Any], dict[str, Any]]:
    entity = args.entity_type
    model = _MODELS[entity]
    problems = []
    column = None
    if args.metric != "count":
        column = _NUMERIC[entity].get(args.field or "")
        if column is None:
            problems.append(("field", f"{args.metric} needs one of {sorted(_NUMERIC[entity]) or 'no numeric fields'}"))
    dimension = None
    if args.group_by is not None:
        dimension = _DIMENSIONS[entity].get(args.group_by)
        if dimension is None:
            problems.append(("group_by", f"one of {sorted(_DIMENSIONS[entity])}"))
    raw_filters = dict(args.filters)
    deal_status = raw_filters.pop("status", None) if entity == "deal" else None
    if deal_status not in (None, "open", "won", "lost"):
        problems.append(("filters.status", "one of open, won, lost"))
    unknown = sorted(set(raw_filters) - set(_allowed_filters(entity)))
    problems.extend((f"filters.{k}", f"allowed: {_allowed_filters(entity)}") for k in unknown)
    if problems:
        raise ValidationFailed(
            "the analysis plan is not valid",
            details=[{"field": f, "message": m, "type": "value_error"} for f, m in problems],
        )
    conditions = _filters(entity, raw_filters).conditions()
    aggregates: dict[str, Callable[[Any], ColumnElement[Any]]] = {
        "sum": func.sum,
        "avg": func.avg,
        "min": func.min,
        "max": func.max,
    }
    aggregate: ColumnElement[Any] = func.count() if args.metric == "count" else aggregates[args.metric](column)
    label = dimension if dimension is not None else null()
    statement: Select[Any] = select(label, func.count(), aggregate).select_from(model)
    if entity == "deal":
        statement = statement.join(PipelineStage, Deal.stage_id == PipelineStage.id)
        if args.group_by == "pipeline":
            statement = statement.join(Pipeline, Deal.pipeline_id == Pipeline.id)
        if deal_status is not None:
            statement = statement.where(_deal_status == literal(deal_status))
    if args.group_by == "company" and entity in ("deal", "contact"):
        statement = statement.outerjoin(Company, model.company_id == Company.id)
    spec = SERVICES[entity].spec
    for name, filter_value in conditions.items():
        if filter_value is None or name not in spec.filters:
            continue
        filter_column, operator = spec.filters[name]
        statement = statement.where(
            filter_column == filter_value
            if operator == "eq"
            else filter_column >= filter_value
            if operator == "ge"
            else filter_column < filter_value
        )
    if dimension is not None:
        statement = statement.group_by(dimension).order_by(desc(aggregate), dimension).limit(args.limit)
    plan = {
        "entity_type": entity,
        "metric": args.metric,
        "field": args.field if args.metric != "count" else None,
        "group_by": args.group_by,
        "filters": {k: v for k, v in args.filters.items() if v is not None},
    }
    return statement, plan


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return round(float(value), 2)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


# --- get_lead_score ------------------------------------------------------------------------------


class LeadScoreArgs(ToolArgs):
    contact_id: uuid.UUID


@tool(
    "get_lead_score",
    "The lead's score from the prediction model trained on this organization's history, with its top factors. "
    "Use the number as given; never invent one.",
    LeadScoreArgs,
)
async def get_lead_score(ctx: ToolContext, args: LeadScoreArgs) -> dict[str, Any]:
    with ctx.read() as session:
        if session.get(Contact, args.contact_id) is None:
            raise NotFound(f"contact {args.contact_id} not found", details={"id": str(args.contact_id)})
    try:
        return ctx.services.lead_score(ctx.organization_id, args.contact_id)
    except ValidationFailed:
        raise  # e.g. the contact is already a customer: the model should know why
    except Exception as error:  # scoring is an aid: its failure must not end the run
        raise ToolFailed(
            "the lead score is unavailable right now", code="lead_score_unavailable", details=str(error)
        ) from error


READ_TOOLS: tuple[AgentTool, ...] = (search_records, get_record, semantic_search, analyze, get_lead_score)
