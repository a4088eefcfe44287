"""Notifications: the list behind the bell (newest first, unread ones marked, critical anomalies
standing out), mark one read, mark all read. The anomalies service's notifications, as the API's.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from okyaku.anomalies.models import Insight, Notification
from okyaku.console.web import CONSOLE, SignedInDep, checked_form
from okyaku.errors import NotFound

SHOWN = 100
NOTICES = {"read": "Marked read.", "all_read": "All notifications marked read."}


def notifications_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.get("/notifications", response_class=HTMLResponse)
    def notifications_page(
        page: SignedInDep, show: Literal["all", "unread"] = "all", notice: str | None = None
    ) -> Response:
        user_id = page.session.user_id
        rows: list[tuple[Notification, object]] = []
        if page.services.anomalies is not None and user_id is not None:
            with page.services.runtime.db.organization_scope(page.organization_id) as session:
                query = (
                    select(Notification, Insight.week_start)
                    .outerjoin(Insight, Insight.id == Notification.insight_id)
                    .where(Notification.user_id == user_id)
                    .order_by(Notification.read_at.is_not(None), Notification.created_at.desc(), Notification.id)
                    .limit(SHOWN)
                )
                if show == "unread":
                    query = query.where(Notification.read_at.is_(None))
                rows = [(n, week) for n, week in session.execute(query).all()]
        items = [
            {
                "n": n,
                "href": f"{CONSOLE}/anomalies/{n.anomaly_id}"
                if n.anomaly_id
                else f"{CONSOLE}/insights?week={week}"
                if week
                else None,
            }
            for n, week in rows
        ]
        return page.render(
            "notifications.html",
            {
                "title": "Notifications",
                "items": items,
                "show": show,
                "no_user": user_id is None,
                "notice": NOTICES.get(notice or ""),
                "here": f"{CONSOLE}/notifications?show={show}",
            },
        )

    @router.post("/notifications/{notification_id}/read")
    async def mark_read(request: Request, page: SignedInDep, notification_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        service = page.services.anomalies
        if service is None:
            raise NotFound("notifications are switched off (AI_ANOMALIES_ENABLED=false)")
        service.mark_read(page.organization_id, page.session.user_id, notification_id)  # NotFound if not yours
        return page.redirect(_back(str(form.get("next") or "")) + "notice=read")

    @router.post("/notifications/read-all")
    async def mark_all_read(request: Request, page: SignedInDep) -> Response:
        form = await checked_form(request, page)
        if page.services.anomalies is not None:
            page.services.anomalies.mark_all_read(page.organization_id, page.session.user_id)
        return page.redirect(_back(str(form.get("next") or "")) + "notice=all_read")

    return router


def _back(next_path: str) -> str:
    back = next_path if next_path.startswith(CONSOLE + "/notifications") else CONSOLE + "/notifications"
    return back + ("&" if "?" in back else "?")
