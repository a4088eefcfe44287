"""Conversation insights in the console: each timeline activity's analysis (read in one batch when
the record page renders, never asking the model), "Analyze now" / "Analyze again", and
"Summarize" on a draft in the Log activity form (analysed, nothing stored).

These are the conversation service's operations (okyaku.conversation), as the API's routes are.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from okyaku.console.conversation_view import InsightView, activity_text, draft_view, insight_view
from okyaku.console.services import ConsoleServices
from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form, safe_next
from okyaku.conversation.responses import AnalyzeTextRequest
from okyaku.conversation.service import ConversationService
from okyaku.db.models import Activity
from okyaku.errors import NotFound, OkyakuError

logger = logging.getLogger(__name__)

DRAFT_TYPES = ("call", "meeting", "email", "note")


def timeline_insights(
    services: ConsoleServices, organization_id: uuid.UUID, activities: Sequence[Any]
) -> dict[str, InsightView]:
    """The insights of the timeline's activities, by activity id (as a string, for the template);
    empty when the conversation feature is off or its tables cannot be read."""
    service = services.conversation
    if service is None or not activities:
        return {}
    try:
        answers = service.stored_analyses(organization_id, [a.id for a in activities])
    except OkyakuError as error:  # a page without insights rather than no page
        logger.warning("timeline insights unavailable: %s", error.message)
        return {}
    return {
        str(a.id): insight_view(answers[a.id], activity_text(a.subject, a.body)) for a in activities if a.id in answers
    }


def conversation(page: Page) -> ConversationService:
    service = page.services.conversation
    if service is None:
        raise NotFound("conversation insights are switched off (AI_CONVERSATION_ENABLED=false)")
    return service


def conversation_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.post("/activities/{activity_id}/analyze")
    async def analyze(request: Request, page: SignedInDep, activity_id: uuid.UUID) -> Response:
        """Analyse now (``force``: again). With htmx, the activity's insights block comes back;
        without, the record page (``next``) with the outcome as its notice."""
        form = await checked_form(request, page)
        force = str(form.get("force") or "") == "true"
        back = safe_next(str(form.get("next") or CONSOLE))
        answer = conversation(page).analyse_now(page.organization_id, activity_id, force=force)
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            activity = session.scalar(select(Activity).where(Activity.id == activity_id))
            if activity is None:
                raise NotFound(f"activity {activity_id} not found")
            subject, body, kind = activity.subject, activity.body, activity.type
        view = insight_view(answer, activity_text(subject, body))
        failed = answer.degraded or answer.status != "analysed"
        if not request.headers.get("hx-request"):
            notice = ("not_reanalysed" if answer.status == "analysed" else "not_analysed") if failed else "analysed"
            return page.redirect(back + ("&" if "?" in back else "?") + f"notice={notice}#insights-{activity_id}")
        message = (answer.message or "not analysed") if failed else "Analysed."
        if failed and answer.status in ("waiting_for_llm", "not_analysed"):
            message = "Not analysed: " + (answer.message or "").removeprefix("not analysed yet: ").removeprefix(
                "not analysed: "
            )
        context = {
            "a": {"subject": subject, "type": kind},
            "insight": view,
            "insight_message": message[:1].upper() + message[1:],
            "here": back,
        }
        return page.render("_activity_insights.html", context)

    @router.post("/activities/summarize", response_class=HTMLResponse)
    async def summarize(request: Request, page: SignedInDep) -> Response:
        """The Log activity form's draft, analysed now and not stored."""
        form = await checked_form(request, page)
        text = str(form.get("body") or "").strip() or str(form.get("subject") or "").strip()
        kind = str(form.get("type") or "note")
        back = safe_next(str(form.get("next") or CONSOLE))
        context: dict[str, Any] = {"title": "Summary of a draft", "back": back}
        status = 200
        if not text:
            context["draft_error"] = "Write some notes (or a subject) first: there is nothing to summarize."
            status = 422
        elif len(text) > 100_000:
            context["draft_error"] = "The draft is too long to summarize (100,000 characters at most)."
            status = 422
        else:
            when = _occurred_at(str(form.get("occurred_at") or ""))
            draft = AnalyzeTextRequest(
                text=text,
                type=kind if kind in DRAFT_TYPES else "note",
                subject=str(form.get("subject") or "")[:500] or None,
                occurred_at=when,
            )
            context["draft"] = draft_view(conversation(page).analyse_text(page.organization_id, draft), text)
        template = "_draft_summary.html" if request.headers.get("hx-request") else "draft_summary.html"
        return page.render(template, context, status_code=status)

    return router


def _occurred_at(value: str) -> datetime | None:
    """The form's datetime-local (UTC), or None (now) when empty or malformed."""
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC) if value else None
    except ValueError:
        return None
