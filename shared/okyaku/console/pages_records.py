"""Console pages over CRM records: the dashboard, lists with keyword and semantic search, record
pages with activities, the lead score card and the deal forecast card.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from okyaku.console import charts
from okyaku.console import queries as qs
from okyaku.console.pages_ai import record_ai
from okyaku.console.services import ConsoleServices
from okyaku.console.web import CONSOLE, SignedInDep, checked_form
from okyaku.embeddings.models import EMBEDDABLE_TYPES
from okyaku.embeddings.search import SearchMode, SearchResult
from okyaku.errors import NotFound, OkyakuError
from okyaku.features import feature_enabled

logger = logging.getLogger(__name__)

SearchKind = Literal["keyword", "semantic"]
FORECAST_MONTHS = 6
FORECAST_SIMULATIONS = 2000
# The Monte Carlo forecast is most of the dashboard's time: reuse one for a minute per organization.
FORECAST_TTL_S = 60.0


def pipeline_forecast(services: ConsoleServices, organization_id: uuid.UUID) -> dict[str, Any]:
    """The pipeline forecast card: P10/P50/P90 by month, or why it is not there."""
    if not feature_enabled(services.runtime.settings, "predictions"):
        return {"unavailable": "Predictions are switched off (AI_PREDICTIONS_ENABLED=false)."}
    cached = services.forecasts.get(organization_id)
    if cached is not None and time.monotonic() - cached[0] < FORECAST_TTL_S:
        return cached[1]
    try:
        result = services.predictions.pipeline_forecast(
            organization_id, months=FORECAST_MONTHS, simulations=FORECAST_SIMULATIONS
        )
    except OkyakuError as error:
        return {"unavailable": error.message}
    result["computed_at"] = datetime.now(UTC)
    bands = [charts.Band(m["month"], m["p10"], m["p50"], m["p90"]) for m in result["by_month"]]
    result["chart"] = charts.band_chart("Forecast of won revenue by month (P50 with P10-P90)", bands)
    services.forecasts[organization_id] = (time.monotonic(), result)
    return result


def score_card(services: ConsoleServices, organization_id: uuid.UUID, entity: str, record_id: uuid.UUID) -> Any:
    """The latest stored lead score (contacts) or deal forecast (deals) with its history; the
    first visit scores the record once (and stores it, as the API does)."""
    if not feature_enabled(services.runtime.settings, "predictions"):
        return {"unavailable": "Predictions are switched off (AI_PREDICTIONS_ENABLED=false)."}
    target = "lead_score" if entity == "contact" else "deal_forecast"
    try:
        history = services.predictions.history(organization_id, entity, record_id, target=target, limit=12)["data"]
        if not history:
            score(services, organization_id, entity, record_id)
            history = services.predictions.history(organization_id, entity, record_id, target=target, limit=12)["data"]
    except NotFound:
        raise
    except OkyakuError as error:
        return {"unavailable": error.message}
    if not history:
        return {"unavailable": "No score has been computed for this record yet."}
    values = [float(item["score"]) for item in reversed(history)]
    return {
        "latest": history[0]["payload"],
        "history": history,
        "sparkline": charts.sparkline("Score history, oldest to newest", values),
        "target": target,
    }


def score(services: ConsoleServices, organization_id: uuid.UUID, entity: str, record_id: uuid.UUID) -> None:
    if entity == "contact":
        services.predictions.lead_score(organization_id, record_id)
    else:
        services.predictions.deal_forecast(organization_id, record_id)


def semantic_search(
    services: ConsoleServices, organization_id: uuid.UUID, q: str, types: list[str], limit: int = 25
) -> SearchResult | str:
    """Hybrid (meaning + words) search, or the reason it cannot run."""
    if not feature_enabled(services.runtime.settings, "rag"):
        return "Semantic search is switched off (AI_RAG_ENABLED=false): showing keyword matches."
    with services.runtime.db.organization_scope(organization_id) as session:
        return services.search.search(
            session, organization_id, q, entity_types=types, limit=limit, mode=SearchMode.HYBRID
        )


def record_insights(
    services: ConsoleServices, organization_id: uuid.UUID, entity: str, record_id: uuid.UUID, activities: Any
) -> dict[str, Any]:
    """The AI on a record page: each activity's conversation insights, the anomaly badge."""
    from okyaku.console.pages_anomalies import anomaly_badge
    from okyaku.console.pages_conversation import timeline_insights

    return {
        "insights": timeline_insights(services, organization_id, activities),
        "anomaly_badge": anomaly_badge(services, organization_id, entity, record_id),
        "conversation_enabled": services.conversation is not None,
    }


def records_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.get("", response_class=HTMLResponse)
    def dashboard(page: SignedInDep, pipeline: uuid.UUID | None = None) -> Response:
        services = page.services
        org = page.organization_id
        with services.runtime.db.organization_scope(org) as session:
            pipelines = qs.pipelines(session)
            chosen = next((p for p in pipelines if p.id == pipeline), pipelines[0] if pipelines else None)
            stages = qs.stage_rows(session, chosen.id) if chosen else []
            rates = [qs.win_rate(session, days=90), qs.win_rate(session, days=None)]
            insights = [panel for provider in services.insight_providers if (panel := provider(session, org))]
        open_stages = [s for s in stages if not (s.is_won or s.is_lost)]
        bars = [charts.Bar(s.name, s.amount, f"{s.deals} deals") for s in open_stages]
        pending = services.agents.approvals.list(org, _pending_filter(), limit=5)
        return page.render(
            "dashboard.html",
            {
                "title": "Dashboard",
                "pipelines": pipelines,
                "pipeline": chosen,
                "stages": stages,
                "stage_chart": charts.bar_chart("Open pipeline amount by stage", bars),
                "rates": rates,
                "forecast": pipeline_forecast(services, org),
                "pending": pending.rows,
                "insights": insights,
            },
        )

    @router.get("/search", response_class=HTMLResponse)
    def search_everything(page: SignedInDep, q: Annotated[str, Query(max_length=500)] = "") -> Response:
        result = semantic_search(page.services, page.organization_id, q.strip(), list(EMBEDDABLE_TYPES)) if q else None
        return page.render("search.html", {"title": "Search", "q": q, "result": result})

    for plural in qs.PLURAL.values():
        add_entity_routes(router, plural)

    return router


def add_entity_routes(router: APIRouter, plural: str) -> None:
    """The list, record and rescore routes of one kind of record."""

    @router.get(f"/{plural}", response_class=HTMLResponse)
    def list_page(
        page: SignedInDep,
        q: Annotated[str, Query(max_length=500)] = "",
        mode: SearchKind = "keyword",
        cursor: Annotated[str | None, Query(max_length=500)] = None,
        notice: str | None = None,
        n: int = 0,
        refused: int = 0,
        sort: Annotated[str, Query(max_length=40)] = "",
        owner: Annotated[str, Query(max_length=40)] = "",
        lifecycle_stage: Annotated[str, Query(max_length=40)] = "",
        stage: Annotated[str, Query(max_length=40)] = "",
    ) -> Response:
        entity = qs.ENTITY_OF_PLURAL[plural]
        org = page.organization_id
        context: dict[str, Any] = {"title": plural.capitalize(), "plural": plural, "entity": entity, "q": q}
        # Sort and filters live in the URL: a list can be bookmarked, shared and paged.
        chosen = {"q": q, "sort": sort, "owner": owner, "lifecycle_stage": lifecycle_stage, "stage": stage}
        context["chosen"] = chosen
        context["keep"] = urlencode({k: v for k, v in chosen.items() if v})
        context["keep_but_sort"] = urlencode({k: v for k, v in chosen.items() if v and k != "sort"})
        filters = qs.list_filters(
            entity, owner=owner, me=page.session.user_id, lifecycle_stage=lifecycle_stage, stage=stage
        )
        context["notice_text"] = NOTICES.get(notice or "", "").format(n=n, refused=refused)
        context["mode"] = mode
        if q.strip() and mode == "semantic":
            result = semantic_search(page.services, org, q.strip(), [entity])
            if isinstance(result, str):
                context["notice"] = result
            else:
                context["hits"] = result.hits
                context["notes"] = result.notes
                context["degraded"] = result.degraded
                return page.render("list.html", context)
        with page.services.runtime.db.organization_scope(org) as session:
            rows, next_cursor = qs.list_records(
                session, entity, q=q.strip() or None, cursor=cursor, sort=sort or None, filters=filters
            )
            context["owners"] = qs.users(session)
            if next_cursor or cursor:
                # More than one page: the bulk actions can take every matching record (console/bulk.py).
                context["matching"] = qs.SERVICES[entity].count(session, filters, q.strip() or None)
            if entity == "deal":
                context["stage_names"] = {s.id: s.name for p in qs.pipelines(session) for s in p.stages}
                context["stage_groups"] = qs.pipelines(session)
        context.update({"rows": rows, "next_cursor": next_cursor})
        return page.render("list.html", context)

    @router.get(f"/{plural}/{{record_id}}", response_class=HTMLResponse)
    def record_page(
        page: SignedInDep,
        record_id: uuid.UUID,
        notice: str | None = None,
        activities_cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> Response:
        entity = qs.ENTITY_OF_PLURAL[plural]
        services = page.services
        org = page.organization_id
        with services.runtime.db.organization_scope(org) as session:
            record = qs.get_record(session, entity, record_id)  # NotFound (404) for another organization's id
            activities, older = qs.activities_of(session, entity, record_id, cursor=activities_cursor)
            prefill = qs.links_of(entity, record)
            links = qs.related(session, entity, record)
            title = qs.record_title(entity, record)
        card = score_card(services, org, entity, record_id) if entity in ("contact", "deal") else None
        from okyaku.agents.approvals import ApprovalFilters

        proposals = services.agents.approvals.list(
            org, ApprovalFilters(status="pending", entity_id=record_id), limit=10
        ).rows
        return page.render(
            "record.html",
            {
                "title": title,
                "entity": entity,
                "plural": plural,
                "record": record,
                "activities": activities,
                "older_activities": older,
                "prefill": prefill,
                "here": f"{CONSOLE}/{plural}/{record_id}",
                "now_local": datetime.now(page.zone).strftime("%Y-%m-%dT%H:%M"),  # the user's wall clock
                "links": links,
                "card": card,
                "proposals": proposals,
                **record_insights(services, org, entity, record_id, activities),
                "notice": NOTICES.get(notice or ""),
                "chat_context": {"type": entity, "id": str(record_id)},
                "ai": record_ai(page, entity, record),
            },
        )

    @router.post(f"/{plural}/{{record_id}}/rescore")
    async def rescore(request: Request, page: SignedInDep, record_id: uuid.UUID) -> Response:
        await checked_form(request, page)
        entity = qs.ENTITY_OF_PLURAL[plural]
        if entity == "company":
            raise NotFound("companies have no score")
        score(page.services, page.organization_id, entity, record_id)
        return page.redirect(f"{CONSOLE}/{plural}/{record_id}?notice=rescored")


NOTICES = {
    "rescored": "Scored again with the current model.",
    "created": "Created.",
    "saved": "Saved.",
    "deleted": "Deleted.",
    "logged": "Activity logged.",
    "moved": "Stage changed.",
    "closed": "Deal closed.",
    "assigned_n": "Owner assigned to {n} records; {refused} refused.",
    "deleted_n": "{n} records deleted; {refused} refused.",
    "none_selected": "Nothing was selected.",
    "analysed": "Activity analysed.",
    "not_analysed": "Not analysed: the language model is unavailable. The rules' findings are shown meanwhile.",
    "not_reanalysed": "Not analysed again: the language model is unavailable. The stored analysis is shown.",
}


def _pending_filter() -> Any:
    from okyaku.agents.approvals import ApprovalFilters

    return ApprovalFilters(status="pending")
