"""The Insights page: the weekly insights, week by week — the figures, the trends against last
week, the top performers, the deals needing attention, the narrative (and whether it was written
from the figures without the LLM: ``degraded``). Read from what the weekly run stored: no LLM call.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

from datetime import date, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from okyaku.anomalies.models import Insight
from okyaku.console.web import CONSOLE, SignedInDep, checked_form
from okyaku.errors import NotFound

WEEKS_LISTED = 26
TREND_LABELS = {
    "activities": "Activities",
    "new_leads": "New leads",
    "deals_won": "Deals won",
    "won_value": "Won value",
    "deals_lost": "Deals lost",
}


def trend_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    trends = figures.get("trends") or {}
    rows = []
    for key, label in TREND_LABELS.items():
        t = trends.get(key)
        if not isinstance(t, dict):
            continue
        change = t.get("change_percent")
        rows.append(
            {
                "label": label,
                "money": key == "won_value",
                "this_week": t.get("this_week"),
                "last_week": t.get("last_week"),
                "change": change,
                "direction": "up" if change and change > 0 else "down" if change and change < 0 else "flat",
            }
        )
    return rows


def insights_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.post("/insights/run")
    async def run_weekly(request: Request, page: SignedInDep) -> Response:
        """Write last week's insights now (what the weekly schedule does): the LLM writes the
        narrative, or the template does when it is down (then marked degraded)."""
        await checked_form(request, page)
        if page.services.anomalies is None:
            raise NotFound("insights are switched off (AI_ANOMALIES_ENABLED=false)")
        result = page.services.anomalies.weekly(page.organization_id)
        return page.redirect(f"{CONSOLE}/insights?week={result['week_start']}&notice=computed")

    @router.get("/insights", response_class=HTMLResponse)
    def insights_page(page: SignedInDep, week: date | None = None, notice: str | None = None) -> Response:
        if page.services.anomalies is None:
            raise NotFound("insights are switched off (AI_ANOMALIES_ENABLED=false)")
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            weeks = list(
                session.scalars(select(Insight.week_start).order_by(Insight.week_start.desc()).limit(WEEKS_LISTED))
            )
            query = select(Insight).order_by(Insight.week_start.desc()).limit(1)
            if week is not None:
                query = select(Insight).where(Insight.week_start == week - timedelta(days=week.weekday()))
            insight = session.scalars(query).first()
        if week is not None and insight is None:
            raise NotFound(f"no insights for the week of {week.isoformat()}")
        figures = insight.figures if insight else {}
        chosen = insight.week_start if insight else None
        position = weeks.index(chosen) if chosen in weeks else -1
        return page.render(
            "insights.html",
            {
                "title": "Insights",
                "notice": "Last week's insights computed." if notice == "computed" else None,
                "insight": insight,
                "figures": figures,
                "trends": trend_rows(figures),
                "win_rate": (figures.get("trends") or {}).get("win_rate_percent", {}).get("this_week"),
                "weeks": weeks,
                "newer": weeks[position - 1] if position > 0 else None,
                "older": weeks[position + 1] if 0 <= position < len(weeks) - 1 else None,
            },
        )

    return router
