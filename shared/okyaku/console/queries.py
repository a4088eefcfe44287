"""Read models of the console's pages, each in the caller's organization-scoped session (RLS).

Records come through the CRM services (``RecordService.get`` raises NotFound for an id of
another organization, exactly as the API does); the dashboard's aggregates are plain
SQLAlchemy over the same tables.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from okyaku.crm.listing import ListParams
from okyaku.crm.pipelines import DealService
from okyaku.crm.records import (
    ACTIVITY_SPEC,
    COMPANY_SPEC,
    CONTACT_SPEC,
    ActivityService,
    RecordService,
)
from okyaku.db.models import Activity, Company, Contact, Deal, Pipeline, PipelineStage, User

SERVICES: dict[str, RecordService] = {
    "contact": RecordService(CONTACT_SPEC),
    "company": RecordService(COMPANY_SPEC),
    "deal": DealService(),
}
ACTIVITIES = ActivityService(ACTIVITY_SPEC)
PLURAL = {"contact": "contacts", "company": "companies", "deal": "deals"}
ENTITY_OF_PLURAL = {plural: entity for entity, plural in PLURAL.items()}
TITLED = ("company", "contact", "deal", "activity")


@dataclass(frozen=True)
class StageRow:
    stage_id: uuid.UUID
    name: str
    position: int
    is_won: bool
    is_lost: bool
    deals: int
    amount: float


@dataclass(frozen=True)
class WinRate:
    won: int
    lost: int
    days: int | None

    @property
    def rate(self) -> float | None:
        closed = self.won + self.lost
        return self.won / closed if closed else None


def pipelines(session: Session) -> list[Pipeline]:
    return list(session.scalars(select(Pipeline).order_by(Pipeline.is_default.desc(), Pipeline.created_at)))


def stage_rows(session: Session, pipeline_id: uuid.UUID) -> list[StageRow]:
    """Every stage of the pipeline, in order, with its deals' count and total amount."""
    statement = (
        select(
            PipelineStage.id,
            PipelineStage.name,
            PipelineStage.position,
            PipelineStage.is_won,
            PipelineStage.is_lost,
            func.count(Deal.id),
            func.coalesce(func.sum(Deal.amount), 0),
        )
        .outerjoin(Deal, Deal.stage_id == PipelineStage.id)
        .where(PipelineStage.pipeline_id == pipeline_id)
        .group_by(PipelineStage.id)
        .order_by(PipelineStage.position)
    )
    return [
        StageRow(row[0], row[1], row[2], row[3], row[4], int(row[5]), float(row[6] or 0))
        for row in session.execute(statement)
    ]


def win_rate(session: Session, *, days: int | None, now: datetime | None = None) -> WinRate:
    """Won / (won + lost) of the deals closed in the last ``days`` (all time: None)."""
    closed_at = func.coalesce(Deal.closed_at, Deal.stage_entered_at)
    statement = (
        select(
            func.count(case((PipelineStage.is_won, 1))),
            func.count(case((PipelineStage.is_lost, 1))),
        )
        .select_from(Deal)
        .join(PipelineStage, PipelineStage.id == Deal.stage_id)
    )
    if days is not None:
        statement = statement.where(closed_at >= (now or datetime.now(UTC)) - timedelta(days=days))
    won, lost = session.execute(statement).one()
    return WinRate(int(won), int(lost), days)


def list_records(
    session: Session,
    entity: str,
    *,
    q: str | None,
    cursor: str | None,
    sort: str | None = None,
    filters: dict[str, Any] | None = None,
    limit: int = 25,
) -> tuple[list[Any], str | None]:
    """A page of a list through the CRM service: its sorts, filters and cursors, as the API's."""
    params = ListParams(limit=limit, cursor=cursor, sort=sort, q=q or None)
    page = SERVICES[entity].list_page(session, params, filters or {})
    return page.rows, page.next_cursor


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


def list_filters(entity: str, *, owner: str, me: uuid.UUID | None, lifecycle_stage: str, stage: str) -> dict[str, Any]:
    """The list filters chosen in the URL, as the CRM service's filter names."""
    filters: dict[str, Any] = {"owner_id": me if owner == "me" else _uuid(owner)}
    if entity == "contact" and lifecycle_stage:
        filters["lifecycle_stage"] = lifecycle_stage
    if entity == "deal":
        filters["stage_id"] = _uuid(stage)
    return filters


def users(session: Session) -> list[Any]:
    return list(session.execute(select(User.id, User.name).order_by(User.name)))


def get_record(session: Session, entity: str, record_id: uuid.UUID) -> Any:
    return SERVICES[entity].get(session, record_id)


def activities_of(
    session: Session, entity: str, record_id: uuid.UUID, limit: int = 20, cursor: str | None = None
) -> tuple[list[Activity], str | None]:
    """A record's timeline page, newest first, and the cursor of the next (older) page."""
    page = ACTIVITIES.list_page(session, ListParams(limit=limit, cursor=cursor), {f"{entity}_id": record_id})
    return list(page.rows), page.next_cursor


def links_of(entity: str, record: Any) -> dict[str, str]:
    """The related-record fields an activity or task logged from a record page starts with."""
    links = {f"{entity}_id": str(record.id)}
    for name in ("company_id", "contact_id"):
        if getattr(record, name, None):
            links.setdefault(name, str(getattr(record, name)))
    return links


def related(session: Session, entity: str, record: Any) -> dict[str, Any]:
    """The records a record page links to: its company, contact, deals, people, owner."""
    out: dict[str, Any] = {}
    if getattr(record, "company_id", None):
        out["company"] = session.get(Company, record.company_id)
    if entity == "deal" and record.contact_id:
        out["contact"] = session.get(Contact, record.contact_id)
    if entity in ("contact", "company"):
        column = Deal.contact_id if entity == "contact" else Deal.company_id
        out["deals"] = list(session.scalars(select(Deal).where(column == record.id).order_by(Deal.created_at.desc())))
    if entity == "company":
        out["contacts"] = list(
            session.scalars(select(Contact).where(Contact.company_id == record.id).order_by(Contact.last_name))
        )
    if entity == "deal":
        out["stages"] = list(
            session.scalars(
                select(PipelineStage)
                .where(PipelineStage.pipeline_id == record.pipeline_id)
                .order_by(PipelineStage.position)
            )
        )
        out["history"] = DealService().history(session, record.id)
    if getattr(record, "owner_id", None):
        out["owner"] = session.get(User, record.owner_id)
    return out


def titles(session: Session, keys: list[tuple[str, uuid.UUID]]) -> dict[tuple[str, uuid.UUID], str]:
    """Display names of records (for approvals and runs), visible ones only."""
    from okyaku.embeddings.search import record_titles

    known = [k for k in keys if k[0] in TITLED]
    return record_titles(session, known) if known else {}


def record_title(entity: str, record: Any) -> str:
    if entity == "contact":
        name = " ".join(p for p in (record.first_name, record.last_name) if p)
        return name or record.email or "Unnamed contact"
    return str(record.name)
