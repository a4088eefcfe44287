"""The day's work: the Tasks page (mine / everyone's, open / done, overdue highlighted, complete
in one click) and Today, the page a rep lands on after signing in.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from okyaku.console import forms, work
from okyaku.console.pages_ai import today_ai
from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form, safe_next
from okyaku.errors import Conflict, OkyakuError

logger = logging.getLogger(__name__)

TASK_NOTICES = {
    "created": "Task created.",
    "saved": "Task saved.",
    "deleted": "Task deleted.",
    "done": "Task completed.",
}


def daily_priorities(page: Page, limit: int = 5) -> dict[str, Any]:
    """The recommendations feature's priorities for the signed-in user, or why there are none."""
    service = page.services.recommendations
    if service is None:
        return {"unavailable": "Recommendations are switched off."}
    try:
        return service.priorities(page.organization_id, page.session.user_id, limit=limit)
    except OkyakuError as error:
        return {"unavailable": error.message}


def work_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.get("/tasks", response_class=HTMLResponse)
    def tasks_page(
        page: SignedInDep,
        who: Literal["mine", "everyone"] = "mine",
        state: Literal["open", "done"] = "open",
        notice: str | None = None,
    ) -> Response:
        assignee = page.session.user_id if who == "mine" else None
        now = datetime.now(UTC)
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            rows = work.tasks(session, assignee_id=assignee, state=state, now=now)
            return page.render(
                "tasks.html",
                {
                    "title": "Tasks",
                    "rows": rows,
                    "who": who,
                    "state": state,
                    "here": f"{CONSOLE}/tasks?who={who}&state={state}",
                    "notice": TASK_NOTICES.get(notice or ""),
                },
            )

    @router.post("/tasks/{task_id}/complete")
    async def complete_task(request: Request, page: SignedInDep, task_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        back = safe_next(str(form.get("next") or f"{CONSOLE}/tasks"))
        version_text = str(form.get("version") or "")
        version = int(version_text) if version_text.isdigit() else None
        try:
            forms.update_record(
                page.services.runtime,
                page.organization_id,
                page.session.user_id,
                "task",
                task_id,
                {"status": "done"},
                version=version,
            )
        except Conflict:
            return page.render(
                "error.html",
                {
                    "title": "Not completed",
                    "status": 409,
                    "back": back,
                    "message": "Someone else changed this task since you loaded the page; nothing was changed.",
                },
                status_code=409,
            )
        return page.redirect(back + ("&" if "?" in back else "?") + "notice=done")

    @router.get("/today", response_class=HTMLResponse)
    def today_page(page: SignedInDep, notice: str | None = None) -> Response:
        now = datetime.now(UTC)
        user_id = page.session.user_id
        if user_id is None:
            view = None  # an API key of no user: it owns nothing
        else:
            with page.services.runtime.db.organization_scope(page.organization_id) as session:
                view = work.today(session, user_id, now)
        priorities = daily_priorities(page) if user_id else {"data": []}
        return page.render(
            "today.html",
            {
                "title": "Today",
                "today": view,
                "now": now,
                "priorities": priorities,
                "ai": {**today_ai(page), "cards": priorities},
                "here": f"{CONSOLE}/today",
                "notice": TASK_NOTICES.get(notice or ""),
            },
        )

    return router
