"""Read models of the day's work: the Tasks page and Today (the signed-in user's overdue and
due-today tasks, deals closing this month, deals gone quiet, new notifications), each in the
caller's organization-scoped session (RLS)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from okyaku.anomalies.models import Notification
from okyaku.db.models import Activity, Company, Contact, Deal, PipelineStage, Task, User

OPEN_TASK = ("open", "in_progress")
# A deal with no activity for this long has "gone quiet".
QUIET_DAYS = 14
TASKS_PER_PAGE = 50


@dataclass(frozen=True)
class TaskRow:
    task: Task
    assignee: str | None
    linked: tuple[str, uuid.UUID, str] | None  # (plural, id, name) of the record it is about
    overdue: bool


def start_of_day(now: datetime) -> datetime:
    return datetime.combine(now.date(), time.min, tzinfo=now.tzinfo or UTC)


TaskSelect = Select[Task, str, str, str | None, str | None, str]


def _task_rows(session: Session, statement: TaskSelect, now: datetime) -> list[TaskRow]:
    rows = []
    for task, assignee, company, contact_first, contact_last, deal in session.execute(statement):
        linked: tuple[str, uuid.UUID, str] | None = None
        if task.deal_id and deal:
            linked = ("deals", task.deal_id, deal)
        elif task.contact_id:
            linked = ("contacts", task.contact_id, " ".join(p for p in (contact_first, contact_last) if p) or "Contact")
        elif task.company_id and company:
            linked = ("companies", task.company_id, company)
        due = task.due_date
        overdue = bool(due and task.status in OPEN_TASK and due < start_of_day(now))
        rows.append(TaskRow(task, assignee, linked, overdue))
    return rows


def _task_select() -> TaskSelect:
    return (
        select(Task, User.name, Company.name, Contact.first_name, Contact.last_name, Deal.name)
        .outerjoin(User, User.id == Task.assignee_id)
        .outerjoin(Company, Company.id == Task.company_id)
        .outerjoin(Contact, Contact.id == Task.contact_id)
        .outerjoin(Deal, Deal.id == Task.deal_id)
    )


def tasks(
    session: Session,
    *,
    assignee_id: uuid.UUID | None,
    state: Literal["open", "done"],
    now: datetime,
    limit: int = TASKS_PER_PAGE,
) -> list[TaskRow]:
    """Open tasks by due date (undated last), or done tasks most recently completed first."""
    statement = _task_select()
    if assignee_id is not None:
        statement = statement.where(Task.assignee_id == assignee_id)
    if state == "open":
        statement = statement.where(Task.status.in_(OPEN_TASK)).order_by(Task.due_date.asc().nulls_last(), Task.id)
    else:
        statement = statement.where(Task.status == "done").order_by(Task.completed_at.desc().nulls_last(), Task.id)
    return _task_rows(session, statement.limit(limit), now)


@dataclass(frozen=True)
class DealRow:
    id: uuid.UUID
    name: str
    amount: Any
    currency: str
    expected_close_date: date | None
    stage: str
    company: str | None
    last_activity: datetime | None


def _open_deals(owner_id: uuid.UUID) -> Select[uuid.UUID, str, Decimal | None, str, date | None, str, str, datetime]:
    # The last touch: its latest activity, or its creation when it has none.
    latest = select(func.max(Activity.occurred_at)).where(Activity.deal_id == Deal.id).correlate(Deal).scalar_subquery()
    last_activity = func.coalesce(latest, Deal.created_at)
    return (
        select(
            Deal.id,
            Deal.name,
            Deal.amount,
            Deal.currency,
            Deal.expected_close_date,
            PipelineStage.name,
            Company.name,
            last_activity.label("last_activity"),
        )
        .join(PipelineStage, PipelineStage.id == Deal.stage_id)
        .outerjoin(Company, Company.id == Deal.company_id)
        .where(Deal.owner_id == owner_id, PipelineStage.is_won.is_(False), PipelineStage.is_lost.is_(False))
    )


@dataclass(frozen=True)
class Today:
    overdue: list[TaskRow]
    due_today: list[TaskRow]
    closing: list[DealRow]
    quiet: list[DealRow]
    notifications: list[Notification]


def today(session: Session, user_id: uuid.UUID, now: datetime) -> Today:
    day_start = start_of_day(now)
    statement = (
        _task_select()
        .where(Task.assignee_id == user_id, Task.status.in_(OPEN_TASK), Task.due_date < day_start + timedelta(days=1))
        .order_by(Task.due_date, Task.id)
        .limit(100)
    )
    rows = _task_rows(session, statement, now)
    month_start = now.date().replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    closing = session.execute(
        _open_deals(user_id)
        .where(Deal.expected_close_date >= month_start, Deal.expected_close_date < next_month)
        .order_by(Deal.expected_close_date, Deal.id)
        .limit(50)
    )
    quiet_before = now - timedelta(days=QUIET_DAYS)
    inner = _open_deals(user_id).subquery()
    quiet = session.execute(
        select(inner).where(inner.c.last_activity < quiet_before).order_by(inner.c.last_activity, inner.c.id).limit(20)
    )
    notes = session.scalars(
        select(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .order_by(Notification.created_at.desc())
        .limit(10)
    )
    return Today(
        overdue=[r for r in rows if r.overdue],
        due_today=[r for r in rows if not r.overdue],
        closing=[DealRow(*row) for row in closing],
        quiet=[DealRow(*row) for row in quiet],
        notifications=list(notes),
    )
