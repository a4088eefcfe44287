"""AI where the rep works: next-best-action cards (apply, explain, feedback, snooze, dismiss) on
record pages and Today, the churn-risk card of a customer, and agents started from a record
("Qualify this lead", "Review this deal") or with a question ("Ask the data analyst").

Every action calls the same services as the HTTP API (``okyaku.recommendations``,
``okyaku.agents``, ``okyaku.predictions``) in-process. A page render never calls the LLM: cards
come from the rules over the stored facts; only Explain (on request) and an agent run do.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import logging
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from okyaku.agents.schemas import RunRequest
from okyaku.console import queries as qs
from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form, safe_next
from okyaku.errors import NotFound, OkyakuError, ValidationFailed, field_error
from okyaku.features import feature_enabled
from okyaku.tenancy import Principal

logger = logging.getLogger(__name__)

CUSTOMER_STAGES = ("customer", "evangelist")
# the console's agent buttons: agent -> the record it works on (None: a question)
AGENT_FOCUS: dict[str, str | None] = {"lead_qualifier": "contact", "deal_assistant": "deal", "data_analyst": None}
FEEDBACK_NOTICES = {
    "helpful": "Thanks: cards like this one now rank higher for you.",
    "not_helpful": "Noted: cards like this one now rank lower for you.",
    "dismissed": "Dismissed: the card stays hidden for {dismiss_days} days.",
    "snoozed": "Snoozed: the card comes back on {until}.",
}
SNOOZE_DEFAULT_DAYS = 3


def principal_of(page: Page) -> Principal:
    assert page.session.api_key_id is not None
    return Principal(page.organization_id, page.session.user_id, page.session.api_key_id)


def with_query(path: str, **params: str) -> str:
    return path + ("&" if "?" in path else "?") + urlencode(params)


def back_to(form: Any, fallback: str) -> str:
    """Where an action returns to: the page it was posted from (this console only), without old notices."""
    target = safe_next(str(form.get("next") or fallback))
    base, _, query = target.partition("?")
    kept = [p for p in query.split("&") if p and p.split("=")[0] not in ("applied", "card_feedback", "until")]
    return base + ("?" + "&".join(kept) if kept else "")


# --- what the pages show -----------------------------------------------------------------------


def entity_cards(page: Page, entity: str, record_id: uuid.UUID, *, refresh: bool) -> dict[str, Any]:
    """The record's ranked cards, or why none. The page shows the stored ones at once; htmx then
    asks for them refreshed from the record's current facts (as the API does) and swaps them in."""
    service = page.services.recommendations
    if service is None:
        return {"unavailable": "Recommendations are switched off (AI_RECOMMENDATIONS_ENABLED=false).", "data": []}
    try:
        return service.for_entity(
            page.organization_id,
            entity,  # type: ignore[arg-type]
            record_id,
            page.session.user_id,
            refresh=refresh,
        )
    except NotFound:
        raise
    except OkyakuError as error:
        return {"unavailable": error.message, "data": []}


def apply_result(page: Page) -> dict[str, Any] | None:
    """The outcome of the Apply just made (``?applied=<pending action>``), read back from the queue."""
    raw = page.request.query_params.get("applied")
    if not raw:
        return None
    try:
        action = page.services.agents.approvals.get(page.organization_id, uuid.UUID(raw))
    except (ValueError, OkyakuError):
        return None
    plural = qs.PLURAL.get(action.entity_type)
    target = action.entity_id or (action.result or {}).get("id")
    return {
        "action": action,
        "href": f"{CONSOLE}/{plural}/{target}" if plural and target and action.entity_type != "activity" else None,
        "queue_href": f"{CONSOLE}/approvals?status={action.status}#action-{action.id}",
    }


def feedback_notice(page: Page) -> str | None:
    kind = page.request.query_params.get("card_feedback")
    if kind not in FEEDBACK_NOTICES:
        return None
    service = page.services.recommendations
    days = service.config.dismiss_days if service is not None else 30
    return FEEDBACK_NOTICES[kind].format(
        until=page.request.query_params.get("until", "the chosen day"), dismiss_days=days
    )


def churn_card(page: Page, record: Any) -> dict[str, Any] | None:
    """A customer's churn risk with its factors (the latest stored score; the first visit scores once)."""
    if getattr(record, "lifecycle_stage", None) not in CUSTOMER_STAGES:
        return None
    services = page.services
    if not feature_enabled(services.runtime.settings, "predictions"):
        return {"unavailable": "Predictions are switched off (AI_PREDICTIONS_ENABLED=false)."}
    org = page.organization_id
    try:
        history = services.predictions.history(org, "contact", record.id, target="churn_risk", limit=6)["data"]
        if not history:
            services.predictions.churn_risk(org, record.id)
            history = services.predictions.history(org, "contact", record.id, target="churn_risk", limit=6)["data"]
    except OkyakuError as error:
        return {"unavailable": error.message}
    if not history:
        return {"unavailable": "No churn risk has been computed for this customer yet."}
    return {"latest": history[0]["payload"], "history": history}


def agent_for(entity: str, record: Any) -> str | None:
    """The agent a record page offers: a deal's review; a contact's qualification, unless already a customer."""
    if entity == "deal":
        return "deal_assistant"
    if entity == "contact" and getattr(record, "lifecycle_stage", None) not in (*CUSTOMER_STAGES, "churned"):
        return "lead_qualifier"
    return None


def record_ai(page: Page, entity: str, record: Any) -> dict[str, Any]:
    """Everything this module adds to a record page (see _recommendation_cards.html,
    _churn_card.html and _agent_actions.html)."""
    return {
        "cards": entity_cards(page, entity, record.id, refresh=False),
        "refresh_url": f"{CONSOLE}/{qs.PLURAL[entity]}/{record.id}/next-best-actions",
        "result": apply_result(page),
        "feedback_notice": feedback_notice(page),
        "churn": churn_card(page, record) if entity == "contact" else None,
        "agent": agent_for(entity, record),
        "agents_enabled": feature_enabled(page.services.runtime.settings, "agents"),
        **snooze_days(),
    }


def today_ai(page: Page) -> dict[str, Any]:
    """What Today adds beside its priorities (which are the same cards, for the user's records)."""
    return {
        "heading": "Daily priorities",
        "heading_id": "priorities-title",
        "result": apply_result(page),
        "feedback_notice": feedback_notice(page),
        **snooze_days(),
    }


def snooze_days(now: datetime | None = None) -> dict[str, str]:
    """The snooze box's default day and the earliest it accepts."""
    now = now or datetime.now(UTC)
    return {
        "snooze_default": (now + timedelta(days=SNOOZE_DEFAULT_DAYS)).date().isoformat(),
        "snooze_min": (now + timedelta(days=1)).date().isoformat(),
    }


def snooze_until(raw: str, now: datetime) -> datetime:
    """A snooze date from the form: the start of that day (UTC); it must be a later day."""
    try:
        day = date.fromisoformat(raw.strip())
    except ValueError as error:
        raise ValidationFailed(
            "choose the day the card comes back", details=[field_error("until", "a date like 2026-12-24")]
        ) from error
    until = datetime.combine(day, time(0, 0), tzinfo=UTC)
    if until <= now:
        raise ValidationFailed("the snooze date must be a later day", details=[field_error("until", "a past day")])
    return until


# --- routes --------------------------------------------------------------------------------------


def add_cards_route(router: APIRouter, plural: str) -> None:
    @router.get(f"/{plural}/{{record_id}}/next-best-actions", response_class=HTMLResponse)
    def fresh_cards(page: SignedInDep, record_id: uuid.UUID) -> Response:
        """The record's cards refreshed from its facts: the fragment htmx swaps into the record page."""
        entity = qs.ENTITY_OF_PLURAL[plural]
        try:
            cards = entity_cards(page, entity, record_id, refresh=True)
        except NotFound:
            raise
        except Exception:  # the fragment replaces the cards in place: never with an error page
            logger.exception("refreshing the cards of %s %s failed", entity, record_id)
            cards = {
                "unavailable": "The cards could not be refreshed just now; reload the page to try again.",
                "data": [],
            }
        ai = {
            "cards": cards,
            "result": apply_result(page),
            "feedback_notice": feedback_notice(page),
            "fresh": True,
            **snooze_days(),
        }
        context = {"ai": ai, "record": {"id": record_id}, "here": f"{CONSOLE}/{plural}/{record_id}"}
        return page.render("_recommendation_cards.html", context)


def ai_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    def service_of(page: Page) -> Any:
        service = page.services.recommendations
        if service is None:
            raise NotFound("recommendations are switched off")
        return service

    for plural in ("contacts", "companies", "deals"):
        add_cards_route(router, plural)

    @router.post("/recommendations/{card_id}/apply")
    async def apply(request: Request, page: SignedInDep, card_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        result = service_of(page).apply(page.organization_id, card_id, page.session.user_id)
        back = back_to(form, f"{CONSOLE}/today")
        return page.redirect(with_query(back, applied=result["pending_action"]["id"]) + "#next-best-actions")

    @router.post("/recommendations/{card_id}/feedback")
    async def feedback(request: Request, page: SignedInDep, card_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        kind = str(form.get("feedback") or "")
        if kind not in FEEDBACK_NOTICES:
            raise ValidationFailed(
                "unknown feedback", details=[field_error("feedback", "helpful, not_helpful, dismissed or snoozed")]
            )
        service = service_of(page)
        until = snooze_until(str(form.get("until") or ""), service.clock()) if kind == "snoozed" else None
        service.feedback(page.organization_id, card_id, page.session.user_id, kind, until=until)
        back = back_to(form, f"{CONSOLE}/today")
        params = {"card_feedback": kind} | ({"until": until.date().isoformat()} if until else {})
        return page.redirect(with_query(back, **params))

    @router.get("/recommendations/{card_id}/explain", response_class=HTMLResponse)
    def explain(request: Request, page: SignedInDep, card_id: uuid.UUID, next: str = "") -> Response:
        # htmx loads the explanation into the card; without JavaScript it is a page of its own
        into_card = request.headers.get("hx-target", "").startswith("explain-")
        try:
            explained = service_of(page).explain(page.organization_id, card_id, page.session.user_id)
        except OkyakuError as error:
            if not into_card:
                raise
            return page.render("_recommendation_explain.html", {"error": error.message}, status_code=error.status_code)
        card = explained["recommendation"]
        context = {"x": explained, "c": card, "back": safe_next(next) if next else None}
        if into_card:
            return page.render("_recommendation_explain.html", context)
        plural = qs.PLURAL[card["entity_type"]]
        fallback = f"{CONSOLE}/{plural}/{card['entity_id']}"
        return page.render(
            "recommendation_explain.html",
            {**context, "title": f"Why: {card['title']}", "back": context["back"] or fallback},
        )

    @router.post("/agents/{agent}/run")
    async def start_agent(
        request: Request, page: SignedInDep, agent: Literal["lead_qualifier", "deal_assistant", "data_analyst"]
    ) -> Response:
        form = await checked_form(request, page)
        focus = AGENT_FOCUS[agent]
        context: dict[str, Any] = {}
        task: str | None = None
        if focus is not None:
            key = f"{focus}_id"
            try:
                context[key] = str(uuid.UUID(str(form.get(key) or "")))
            except ValueError as error:
                raise ValidationFailed(f"which {focus}?", details=[field_error(key, "a record id")]) from error
        else:
            task = str(form.get("question") or "").strip()
            if not task:
                raise ValidationFailed("ask the data analyst a question", details=[field_error("question", "empty")])
        try:
            run_request = RunRequest(task=task, context=context)
        except ValidationError as error:
            raise ValidationFailed(
                "the question is too long (at most 4,000 characters)", details=[field_error("question", "too long")]
            ) from error
        execution = page.services.agents.start_run(principal_of(page), agent, run_request)
        logger.info("agent run started from the console", extra={"agent": agent, "execution_id": str(execution.id)})
        return page.redirect(f"{CONSOLE}/runs/{execution.id}")

    return router
