"""The Anomalies page: what the scheduled scans found, filtered by type, severity, status and
record, each with its evidence (for a metric series, a chart of the series, its baseline and the
flagged days); acknowledge, resolve or dismiss with a note. And the badge on the record pages of
the deals and contacts an open anomaly concerns.

The list and the transitions are the anomalies service's (okyaku.anomalies), as the API's are.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select, text

from okyaku.anomalies.models import ANOMALY_TYPES, OPEN_STATUSES, SEVERITIES, STATUSES, Anomaly
from okyaku.anomalies.service import AnomalyService
from okyaku.console import charts
from okyaku.console.queries import PLURAL
from okyaku.console.services import ConsoleServices
from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form
from okyaku.errors import Conflict, NotFound, ValidationFailed

PAGE_SIZE = 20
ENTITY_TYPES = ("deal", "contact", "user", "organization")
ACTIONS = {"acknowledge": "Acknowledge", "resolve": "Resolve", "dismiss": "Dismiss"}
# Which actions each status allows (the service refuses the others with 409).
ALLOWED = {"open": ("acknowledge", "resolve", "dismiss"), "acknowledged": ("resolve", "dismiss")}
NOTICES = {
    "acknowledge": "Anomaly acknowledged.",
    "resolve": "Anomaly resolved.",
    "dismiss": "Anomaly dismissed: it is not raised again for a while.",
    "scanned": "Scanned: {created} new anomalies.",
}
# Evidence keys shown elsewhere on the card (the chart, the changes table) or not useful to a reader.
HIDDEN_EVIDENCE = {"series", "changes", "sample_contact_ids", "metric"}
_WORST_FIRST = text("array_position(ARRAY['critical','high','medium','low']::varchar[], anomalies.severity)")


def anomaly_service(page: Page) -> AnomalyService:
    service = page.services.anomalies
    if service is None:
        raise NotFound("anomalies are switched off (AI_ANOMALIES_ENABLED=false)")
    return service


def series_chart(anomaly: Anomaly) -> str | None:
    """The stored window of a metric-series anomaly, drawn; None for other anomalies (and for
    series anomalies found before their window was kept)."""
    window = (anomaly.evidence or {}).get("series")
    if not isinstance(window, dict) or not window.get("values"):
        return None
    first = date.fromisoformat(str(window["first_day"]))
    judged = {str(j["day"]): j for j in window.get("judged", [])}
    points = []
    for i, value in enumerate(window["values"]):
        day = (first + timedelta(days=i)).isoformat()
        mark = judged.get(day, {})
        points.append(
            charts.SeriesPoint(
                day,
                float(value),
                None if mark.get("expected") is None else float(mark["expected"]),
                bool(mark.get("anomalous")),
            )
        )
    metric = str(anomaly.evidence.get("metric", "value")).replace("_", " ")
    return charts.series_chart(f"{metric} per day: the series, its baseline (dashed) and flagged days (red)", points)


def evidence_rows(anomaly: Anomaly) -> list[tuple[str, str]]:
    rows = []
    for key, value in (anomaly.evidence or {}).items():
        if key in HIDDEN_EVIDENCE or value is None:
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif isinstance(value, float):
            value = f"{value:,.2f}".rstrip("0").rstrip(".")
        rows.append((key.replace("_", " ").capitalize(), str(value)))
    return rows


def record_link(anomaly: Anomaly) -> str | None:
    plural = PLURAL.get(anomaly.entity_type)
    return f"{CONSOLE}/{plural}/{anomaly.entity_id}" if plural and anomaly.entity_id else None


@dataclass(frozen=True)
class AnomalyCard:
    anomaly: Anomaly
    chart: str | None
    evidence: list[tuple[str, str]]
    changes: list[dict[str, Any]]
    record_href: str | None
    actions: tuple[str, ...]


def card(anomaly: Anomaly) -> AnomalyCard:
    changes = anomaly.evidence.get("changes") if anomaly.evidence else None
    return AnomalyCard(
        anomaly,
        series_chart(anomaly),
        evidence_rows(anomaly),
        list(changes) if isinstance(changes, list) else [],
        record_link(anomaly),
        ALLOWED.get(anomaly.status, ()),
    )


def anomaly_badge(services: ConsoleServices, organization_id: uuid.UUID, entity: str, record_id: uuid.UUID) -> Any:
    """The open anomalies of one record, for its page's badge: how many, the worst, a link."""
    if services.anomalies is None or entity not in ("deal", "contact"):
        return None
    with services.runtime.db.organization_scope(organization_id) as session:
        rows = session.execute(
            select(Anomaly.id, Anomaly.severity, Anomaly.title)
            .where(
                Anomaly.entity_type == entity,
                Anomaly.entity_id == record_id,
                Anomaly.status.in_(OPEN_STATUSES),
            )
            .order_by(_WORST_FIRST, Anomaly.last_detected_at.desc())
        ).all()
    if not rows:
        return None
    href = (
        f"{CONSOLE}/anomalies/{rows[0].id}"
        if len(rows) == 1
        else f"{CONSOLE}/anomalies?" + urlencode({"entity": entity, "entity_id": str(record_id), "status": "active"})
    )
    return {"count": len(rows), "severity": rows[0].severity, "title": rows[0].title, "href": href}


def anomalies_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.get("/anomalies", response_class=HTMLResponse)
    def anomalies_page(
        page: SignedInDep,
        type: Annotated[str, Query(max_length=30)] = "",
        severity: Annotated[str, Query(max_length=10)] = "",
        status: Annotated[str, Query(max_length=15)] = "active",
        entity: Annotated[str, Query(max_length=20)] = "",
        entity_id: uuid.UUID | None = None,
        offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
        notice: str | None = None,
        created: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:
        service = anomaly_service(page)
        # Unknown filter values are a bookmark gone stale: shown as "any", not an error page.
        chosen = {
            "type": type if type in ANOMALY_TYPES else "",
            "severity": severity if severity in SEVERITIES else "",
            "status": status if status in (*STATUSES, "active", "any") else "active",
            "entity": entity if entity in ENTITY_TYPES else "",
        }
        cards, total = list_cards(service, page.organization_id, chosen, entity_id, offset)
        keep = {k: v for k, v in chosen.items() if v} | ({"entity_id": str(entity_id)} if entity_id else {})
        return page.render(
            "anomalies.html",
            {
                "title": "Anomalies",
                "cards": cards,
                "total": total,
                "chosen": chosen,
                "entity_id": entity_id,
                "types": ANOMALY_TYPES,
                "severities": SEVERITIES,
                "statuses": STATUSES,
                "entity_types": ENTITY_TYPES,
                "offset": offset,
                "page_size": PAGE_SIZE,
                "keep": urlencode(keep),
                "here": f"{CONSOLE}/anomalies" + (f"?{urlencode(keep)}" if keep else ""),
                "notice": NOTICES.get(notice or "", "").format(created=created),
            },
        )

    @router.post("/anomalies/scan")
    async def scan_now(request: Request, page: SignedInDep) -> Response:
        """Run every detector on the organization now (what the schedule does; no LLM)."""
        await checked_form(request, page)
        report = anomaly_service(page).scan(page.organization_id)
        return page.redirect(f"{CONSOLE}/anomalies?notice=scanned&created={report.created}")

    @router.get("/anomalies/{anomaly_id}", response_class=HTMLResponse)
    def anomaly_page(page: SignedInDep, anomaly_id: uuid.UUID, notice: str | None = None) -> Response:
        anomaly = anomaly_service(page).get(page.organization_id, anomaly_id)  # NotFound: 404 page
        return page.render(
            "anomaly.html",
            {
                "title": anomaly.title,
                "c": card(anomaly),
                "here": f"{CONSOLE}/anomalies/{anomaly_id}",
                "notice": NOTICES.get(notice or ""),
            },
        )

    @router.post("/anomalies/{anomaly_id}/transition")
    async def transition(request: Request, page: SignedInDep, anomaly_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        action = str(form.get("action") or "")
        if action not in ACTIONS:
            raise ValidationFailed("choose acknowledge, resolve or dismiss", details={"action": action})
        note = str(form.get("note") or "").strip()[:2000] or None
        back = str(form.get("next") or f"{CONSOLE}/anomalies/{anomaly_id}")
        if not back.startswith(CONSOLE + "/anomalies"):
            back = f"{CONSOLE}/anomalies/{anomaly_id}"
        try:
            anomaly_service(page).transition(
                page.organization_id,
                anomaly_id,
                action,  # type: ignore[arg-type]  # checked against ACTIONS above
                user_id=page.session.user_id,
                note=note,
            )
        except Conflict as error:
            return page.render(
                "error.html",
                {"title": "Not changed", "status": 409, "back": back, "message": error.message},
                status_code=409,
            )
        return page.redirect(back + ("&" if "?" in back else "?") + f"notice={action}")

    return router


def list_cards(
    service: AnomalyService,
    organization_id: uuid.UUID,
    chosen: dict[str, str],
    entity_id: uuid.UUID | None,
    offset: int,
) -> tuple[list[AnomalyCard], int]:
    """One page of anomalies, worst first; status "active" is open or acknowledged (what still
    needs someone), "any" every status."""
    status = chosen["status"]
    if status not in ("active", "any"):
        rows, total = service.list_anomalies(
            organization_id,
            type_=chosen["type"] or None,
            severity=chosen["severity"] or None,
            status=status,
            entity_type=chosen["entity"] or None,
            entity_id=entity_id,
            limit=PAGE_SIZE,
            offset=offset,
        )
        return [card(r) for r in rows], total
    with service.runtime.db.organization_scope(organization_id) as session:
        query = select(Anomaly)
        for column, value in (
            (Anomaly.type, chosen["type"]),
            (Anomaly.severity, chosen["severity"]),
            (Anomaly.entity_type, chosen["entity"]),
        ):
            if value:
                query = query.where(column == value)
        if entity_id is not None:
            query = query.where(Anomaly.entity_id == entity_id)
        if status == "active":
            query = query.where(Anomaly.status.in_(OPEN_STATUSES))
        total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
        rows = list(
            session.scalars(
                query.order_by(_WORST_FIRST, Anomaly.last_detected_at.desc(), Anomaly.id)
                .limit(PAGE_SIZE)
                .offset(offset)
            )
        )
        return [card(r) for r in rows], total
