"""Weekly insights: figures computed from the CRM, a narrative written from them.

The figures (top performers, deals needing attention, trends with their numbers, opportunities)
come from SQL. The LLM only words them: every number in its text must be one of the figures
(rounding allowed), else the templated narrative is used and ``degraded`` says so."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.orm import Session

from okyaku.llm.prompts import PromptTemplate

if TYPE_CHECKING:
    from okyaku.llm.gateway import LLMGateway

logger = logging.getLogger(__name__)

FIGURES_BEGIN, FIGURES_END = "<figures>", "</figures>"
LLM_TIMEOUT_S = 30.0
_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")


class NarrativeDraft(BaseModel):
    narrative: str = Field(min_length=1, max_length=3000, description="3-6 sentences for the sales team")


NARRATIVE = PromptTemplate(
    name="anomalies.weekly_narrative",
    version="1",
    system=(
        "You write the weekly summary of a sales team's CRM. Use only the figures given: every number "
        "you write must appear in the figures exactly (you may round to fewer decimals). Never compute "
        "new numbers, never invent names, deals or events. Plain, specific sentences; no greeting."
    ),
    user=(
        "Write 3-6 sentences on the week: who performed best, which deals need attention, the trends, "
        f"the opportunities.\n{FIGURES_BEGIN}\n$figures\n{FIGURES_END}"
    ),
    output=NarrativeDraft,
)


def week_bounds(week_start: date) -> tuple[datetime, datetime]:
    from datetime import UTC

    start = datetime.combine(week_start, time(0), tzinfo=UTC)
    return start, start + timedelta(days=7)


def last_complete_week(today: date) -> date:
    """The Monday of the last whole week before ``today``."""
    this_monday = today - timedelta(days=today.weekday())
    return this_monday - timedelta(days=7)


def _pct_change(current: float, previous: float) -> float | None:
    return None if previous == 0 else round(100.0 * (current - previous) / previous, 1)


def compute_figures(session: Session, week_start: date) -> dict[str, Any]:
    start, end = week_bounds(week_start)
    previous = start - timedelta(days=7)
    params = {"start": start, "end": end, "previous": previous}

    def count(sql: str, since: datetime, until: datetime) -> float:
        return float(session.execute(text(sql), {"since": since, "until": until}).scalar() or 0)

    trend_sql = {
        "activities": "SELECT count(*) FROM activities WHERE occurred_at >= :since AND occurred_at < :until",
        "new_leads": "SELECT count(*) FROM contacts WHERE created_at >= :since AND created_at < :until",
        "deals_won": "SELECT count(*) FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id "
        "WHERE s.is_won AND d.closed_at >= :since AND d.closed_at < :until",
        "won_value": "SELECT coalesce(sum(d.amount), 0) FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id "
        "WHERE s.is_won AND d.closed_at >= :since AND d.closed_at < :until",
        "deals_lost": "SELECT count(*) FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id "
        "WHERE s.is_lost AND d.closed_at >= :since AND d.closed_at < :until",
    }
    trends: dict[str, dict[str, float | None]] = {}
    for name, sql in trend_sql.items():
        current, before = count(sql, start, end), count(sql, previous, start)
        trends[name] = {"this_week": current, "last_week": before, "change_percent": _pct_change(current, before)}
    won, lost = trends["deals_won"]["this_week"] or 0.0, trends["deals_lost"]["this_week"] or 0.0
    trends["win_rate_percent"] = {"this_week": round(100 * won / (won + lost), 1) if won + lost else None}

    performers = [
        {"name": r.name, "deals_won": int(r.won), "won_value": float(r.value), "activities": int(r.activities)}
        for r in session.execute(
            text(
                """
                SELECT u.name,
                  (SELECT count(*) FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id
                    WHERE d.owner_id = u.id AND s.is_won AND d.closed_at >= :start AND d.closed_at < :end) AS won,
                  (SELECT coalesce(sum(d.amount), 0) FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id
                    WHERE d.owner_id = u.id AND s.is_won AND d.closed_at >= :start AND d.closed_at < :end) AS value,
                  (SELECT count(*) FROM activities a
                    WHERE a.owner_id = u.id AND a.occurred_at >= :start AND a.occurred_at < :end) AS activities
                FROM users u
                ORDER BY value DESC, won DESC, activities DESC, u.name
                LIMIT 3
                """
            ),
            params,
        )
        if r.won or r.activities
    ]
    attention = [
        {"deal": r.title, "why": r.type.replace("_", " "), "severity": r.severity, "amount": _num(r.money_at_stake)}
        for r in session.execute(
            text(
                "SELECT title, type, severity, money_at_stake FROM anomalies WHERE status IN ('open', 'acknowledged') "
                "AND entity_type = 'deal' ORDER BY array_position(ARRAY['critical','high','medium','low'], severity), "
                "money_at_stake DESC NULLS LAST LIMIT 5"
            )
        )
    ]
    opportunities = [
        {"deal": r.name, "amount": _num(r.amount), "stage": r.stage, "expected_close_date": r.close.isoformat()}
        for r in session.execute(
            text(
                """
                SELECT d.name, d.amount, s.name AS stage, d.expected_close_date AS close
                FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id
                WHERE NOT (s.is_won OR s.is_lost) AND d.expected_close_date >= CAST(:end AS date)
                  AND d.expected_close_date < CAST(:end AS date) + 30 AND d.amount IS NOT NULL
                ORDER BY s.probability * d.amount DESC LIMIT 3
                """
            ),
            params,
        )
    ]
    open_anomalies = int(
        session.execute(text("SELECT count(*) FROM anomalies WHERE status IN ('open', 'acknowledged')")).scalar() or 0
    )
    return {
        "week_start": week_start.isoformat(),
        "week_end": (week_start + timedelta(days=6)).isoformat(),
        "trends": trends,
        "top_performers": performers,
        "deals_needing_attention": attention,
        "opportunities": opportunities,
        "open_anomalies": open_anomalies,
    }


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def _money(value: float | None) -> str:
    return "an unknown amount" if value is None else f"{value:,.0f}"


def _count(value: float) -> str:
    return f"{value:,.0f}"


def template_narrative(figures: Mapping[str, Any]) -> str:
    """The narrative without the LLM: the same figures in fixed sentences."""
    trends = figures["trends"]
    lines = []
    activities = trends["activities"]
    change = activities["change_percent"]
    lines.append(
        f"The team logged {_count(activities['this_week'])} activities this week"
        + (f" ({change:+.1f}% on last week's {_count(activities['last_week'])})." if change is not None else ".")
    )
    won = trends["deals_won"]
    lines.append(
        f"{_count(won['this_week'])} deals were won for {_money(trends['won_value']['this_week'])}, "
        f"{_count(trends['deals_lost']['this_week'])} were lost; "
        f"{_count(trends['new_leads']['this_week'])} new leads came in."
    )
    if figures["top_performers"]:
        best = figures["top_performers"][0]
        lines.append(
            f"Top performer: {best['name']} ({_count(best['deals_won'])} deals won, "
            f"{_money(best['won_value'])}, {_count(best['activities'])} activities)."
        )
    if figures["deals_needing_attention"]:
        names = "; ".join(f"{d['deal']} ({d['why']}, {d['severity']})" for d in figures["deals_needing_attention"][:3])
        lines.append(f"Needing attention: {names}.")
    if figures["opportunities"]:
        names = "; ".join(
            f"{o['deal']} ({_money(o['amount'])}, {o['stage']}, closes {o['expected_close_date']})"
            for o in figures["opportunities"]
        )
        lines.append(f"Opportunities closing within 30 days: {names}.")
    return " ".join(lines)


def _numbers_in(value: Any) -> set[float]:
    found: set[float] = set()
    if isinstance(value, bool) or value is None:
        return found
    if isinstance(value, int | float):
        found.add(float(value))
    elif isinstance(value, str):
        found |= {float(m.replace(",", "")) for m in _NUMBER.findall(value)}
        found |= {float(p) for p in re.findall(r"\d+", value)}  # dates: 2026-11-23 -> 2026, 11, 23
    elif isinstance(value, Mapping):
        for item in value.values():
            found |= _numbers_in(item)
    elif isinstance(value, list | tuple):
        found |= {float(len(value))}
        for item in value:
            found |= _numbers_in(item)
    return found


def invented_numbers(narrative: str, figures: Mapping[str, Any]) -> list[str]:
    """Numbers in ``narrative`` that are none of the figures (each may be rounded, as written)."""
    allowed = _numbers_in(figures)
    invented = []
    for raw in _NUMBER.findall(narrative):
        value = float(raw.replace(",", ""))
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        if not any(
            round(candidate, decimals) == value or round(abs(candidate), decimals) == value for candidate in allowed
        ):
            invented.append(raw)
    return invented


def write_narrative(gateway: LLMGateway | None, figures: Mapping[str, Any]) -> tuple[str, str, str | None, str | None]:
    """(narrative, source, model, why the LLM's text was not used)."""
    fallback = template_narrative(figures)
    if gateway is None:
        return fallback, "template", None, "no LLM configured"
    messages = NARRATIVE.render(figures=json.dumps(figures, ensure_ascii=False))
    try:
        result = gateway.sync.chat_structured(
            messages, NarrativeDraft, timeout_s=LLM_TIMEOUT_S, max_tokens=600, operation=NARRATIVE.id
        )
    except Exception as error:  # unreachable, breaker open, invalid output: the template answers
        logger.info("weekly narrative: LLM unavailable: %s", error)
        return fallback, "template", None, f"LLM unavailable: {type(error).__name__}"
    narrative = result.value.narrative.strip()
    invented = invented_numbers(narrative, figures)
    if invented:
        logger.warning("weekly narrative rejected: numbers not in the figures: %s", invented)
        return fallback, "template", None, f"numbers not in the figures: {', '.join(invented[:10])}"
    return narrative, "llm", getattr(result, "model", None), None
