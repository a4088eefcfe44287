"""Dashboard panels from the anomalies feature (okyaku.anomalies): the open anomalies, worst
first, and the latest weekly insight. Read in the dashboard's organization-scoped session."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from okyaku.anomalies.models import Anomaly, Insight
from okyaku.console.panels import InsightPanel, InsightProvider

CONSOLE = "/console"
SHOWN = 8
_WORST_FIRST = text("array_position(ARRAY['critical','high','medium','low']::varchar[], anomalies.severity)")


def open_anomalies(session: Session, organization_id: uuid.UUID) -> InsightPanel | None:
    total = int(session.scalar(select(func.count()).select_from(Anomaly).where(Anomaly.status == "open")) or 0)
    rows = session.scalars(
        select(Anomaly)
        .where(Anomaly.status == "open")
        .order_by(_WORST_FIRST, Anomaly.last_detected_at.desc(), Anomaly.id)
        .limit(SHOWN)
    )
    items = []
    for anomaly in rows:
        # To the anomaly's page: its evidence, its record, and where to acknowledge or dismiss it.
        href = f"{CONSOLE}/anomalies/{anomaly.id}"
        items.append({"text": f"{anomaly.severity}: {anomaly.title}", "href": href, "severity": anomaly.severity})
    if not items:
        return InsightPanel("Anomalies", [{"text": "No open anomalies."}])
    note = f"{total - len(items)} more open." if total > len(items) else ""
    return InsightPanel("Anomalies", items, note=note)


def latest_insight(session: Session, organization_id: uuid.UUID) -> InsightPanel | None:
    insight = session.scalars(select(Insight).order_by(Insight.week_start.desc()).limit(1)).first()
    if insight is None:
        return None
    note = f"Week of {insight.week_start.isoformat()}"
    if insight.degraded:
        note += " · written from the figures without the LLM (degraded)"
    return InsightPanel("This week's insight", [{"text": insight.narrative}], note=note)


PROVIDERS: tuple[InsightProvider, ...] = (open_anomalies, latest_insight)
