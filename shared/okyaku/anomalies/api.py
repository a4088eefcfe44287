"""The anomalies API: /api/v1/ai/anomalies, /api/v1/ai/insights, /api/v1/notifications.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from okyaku.anomalies.models import ANOMALY_TYPES, SEVERITIES, STATUSES
from okyaku.anomalies.service import AnomalyService
from okyaku.http import PrincipalDep, create_app
from okyaku.runtime import Runtime

AnomalyType = Literal["stale_deal", "deal_change", "data_gap", "churn_risk", "engagement_drop", "unusual_pattern"]
SeverityName = Literal["low", "medium", "high", "critical"]
StatusName = Literal["open", "acknowledged", "resolved", "dismissed"]
EntityType = Literal["deal", "contact", "user", "organization"]
Action = Literal["acknowledge", "resolve", "dismiss"]
assert set(AnomalyType.__args__) == set(ANOMALY_TYPES)  # type: ignore[attr-defined]
assert set(SeverityName.__args__) == set(SEVERITIES) and set(StatusName.__args__) == set(STATUSES)  # type: ignore[attr-defined]


class AnomalyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    type: AnomalyType
    entity_type: str
    entity_id: uuid.UUID | None
    entity_key: str
    title: str
    description: str
    severity: SeverityName
    status: StatusName
    deviation: float | None
    money_at_stake: Decimal | None
    evidence: dict[str, Any] = Field(description="What the detector saw: before/after, baseline, scores")
    owner_id: uuid.UUID | None
    detection_count: int = Field(description="Scans that found it (an open anomaly is updated, not re-created)")
    first_detected_at: datetime
    last_detected_at: datetime
    status_changed_at: datetime | None
    status_changed_by: uuid.UUID | None
    status_note: str | None


class AnomalyPage(BaseModel):
    data: list[AnomalyOut]
    total: int
    limit: int
    offset: int


class TransitionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000)


class InsightOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    week_start: date
    figures: dict[str, Any]
    narrative: str
    narrative_source: Literal["llm", "template"]
    degraded: bool = Field(description="true when the LLM's text was not used (down, or a number not in the figures)")
    rejected_reason: str | None
    model: str | None
    created_at: datetime
    updated_at: datetime


class WeeklyRunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    week_start: date | None = Field(default=None, description="Any day of the week; default: the last whole week")


class NotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    kind: Literal["anomaly", "weekly_summary", "mailbox"]
    anomaly_id: uuid.UUID | None
    insight_id: uuid.UUID | None
    severity: SeverityName
    title: str
    body: str
    read_at: datetime | None
    email_status: Literal["pending", "digest", "sent", "skipped"]
    email_sent_at: datetime | None
    created_at: datetime


def get_anomalies(request: Request) -> AnomalyService:
    service: AnomalyService = request.app.state.anomalies
    return service


AnomaliesDep = Annotated[AnomalyService, Depends(get_anomalies)]


def enabled(service: AnomaliesDep) -> AnomalyService:
    service.require_enabled()
    return service


EnabledDep = Annotated[AnomalyService, Depends(enabled)]


def anomalies_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/ai", tags=["ai anomalies"])

    @router.get("/anomalies", response_model=AnomalyPage, summary="Anomalies, most severe first")
    def list_anomalies(
        principal: PrincipalDep,
        service: EnabledDep,
        type: AnomalyType | None = None,
        severity: SeverityName | None = None,
        status: StatusName | None = None,
        entity_type: EntityType | None = None,
        entity_id: uuid.UUID | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> AnomalyPage:
        rows, total = service.list_anomalies(
            principal.organization_id,
            type_=type,
            severity=severity,
            status=status,
            entity_type=entity_type,
            entity_id=entity_id,
            limit=limit,
            offset=offset,
        )
        return AnomalyPage(data=[AnomalyOut.model_validate(r) for r in rows], total=total, limit=limit, offset=offset)

    @router.post("/anomalies/scan", summary="Scan your organization now", description="Runs every detector.")
    def scan_now(principal: PrincipalDep, service: EnabledDep) -> dict[str, Any]:
        return service.scan(principal.organization_id).as_dict()

    @router.get("/anomalies/{anomaly_id}", response_model=AnomalyOut, summary="One anomaly with its evidence")
    def get_anomaly(anomaly_id: uuid.UUID, principal: PrincipalDep, service: EnabledDep) -> AnomalyOut:
        return AnomalyOut.model_validate(service.get(principal.organization_id, anomaly_id))

    @router.post(
        "/anomalies/{anomaly_id}/{action}",
        response_model=AnomalyOut,
        summary="Acknowledge, resolve or dismiss",
        description="open -> acknowledged; open/acknowledged -> resolved or dismissed (409 otherwise). "
        "A dismissed anomaly is not raised again for ANOMALY_DISMISS_SNOOZE_DAYS.",
    )
    def transition(
        anomaly_id: uuid.UUID,
        action: Action,
        principal: PrincipalDep,
        service: EnabledDep,
        body: TransitionRequest | None = None,
    ) -> AnomalyOut:
        anomaly = service.transition(
            principal.organization_id, anomaly_id, action, user_id=principal.user_id, note=body.note if body else None
        )
        return AnomalyOut.model_validate(anomaly)

    @router.get("/insights", response_model=list[InsightOut], summary="Weekly insights, newest week first")
    def list_insights(
        principal: PrincipalDep,
        service: EnabledDep,
        week: Annotated[date | None, Query(description="Any day of the week wanted")] = None,
        limit: Annotated[int, Query(ge=1, le=52)] = 12,
    ) -> list[InsightOut]:
        return [
            InsightOut.model_validate(i)
            for i in service.list_insights(principal.organization_id, week=week, limit=limit)
        ]

    @router.post("/insights", summary="Compute a week's insights now (and queue its summary e-mails)")
    def run_weekly(
        principal: PrincipalDep, service: EnabledDep, body: WeeklyRunRequest | None = None
    ) -> dict[str, Any]:
        week = body.week_start if body else None
        if week is not None:
            from datetime import timedelta

            week = week - timedelta(days=week.weekday())
        return service.weekly(principal.organization_id, week)

    return router


def notifications_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])

    @router.get("", response_model=list[NotificationOut], summary="Your notifications, newest first")
    def list_notifications(
        principal: PrincipalDep,
        service: AnomaliesDep,
        unread: bool = False,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> list[NotificationOut]:
        rows = service.list_notifications(principal.organization_id, principal.user_id, unread=unread, limit=limit)
        return [NotificationOut.model_validate(n) for n in rows]

    @router.post("/{notification_id}/read", response_model=NotificationOut, summary="Mark one read")
    def mark_read(notification_id: uuid.UUID, principal: PrincipalDep, service: AnomaliesDep) -> NotificationOut:
        return NotificationOut.model_validate(
            service.mark_read(principal.organization_id, principal.user_id, notification_id)
        )

    return router


def create_anomalies_app(service: AnomalyService | None = None, runtime: Runtime | None = None) -> FastAPI:
    app = create_app(
        "Okyaku anomalies, insights and notifications",
        service.runtime if service is not None else runtime,
        description="Scheduled scans that find what changed, weekly insights, per-user notifications.",
    )
    app.state.anomalies = service or AnomalyService(app.state.runtime)
    app.include_router(anomalies_router())
    app.include_router(notifications_router())
    return app
