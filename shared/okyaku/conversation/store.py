"""The conversation feature's SQL: activities to analyse, stored analyses, the competitor list.

An activity's content hash is computed by Postgres (``content_hash_sql``), so the sweep can find
activities whose current text has no analysis in one query, and the consumer reads the very same
hash when it loads an activity.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, case, cast, delete, exists, func, literal, or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from okyaku.conversation.models import ConversationAnalysisRow, ConversationCompetitor, ConversationWaiting
from okyaku.conversation.rules import Competitor
from okyaku.db.models import Activity, Organization

_SEPARATOR = "\x1f"


def content_hash_sql() -> ColumnElement[str]:
    """sha256 (hex) of what the analysis reads: type, direction, the day it happened (relative dates
    resolve against it), subject and body."""
    day = func.to_char(func.timezone("UTC", Activity.occurred_at), "YYYY-MM-DD")
    joined = func.concat_ws(
        literal(_SEPARATOR),
        Activity.type,
        func.coalesce(Activity.direction, ""),
        day,
        func.coalesce(Activity.subject, ""),
        func.coalesce(Activity.body, ""),
    )
    return cast(func.encode(func.sha256(func.convert_to(joined, "UTF8")), "hex"), String)


def content_hash_of(activity_type: str, direction: str | None, day: str, subject: str | None, body: str | None) -> str:
    """The same hash in Python (tests keep the two equal)."""
    joined = _SEPARATOR.join([activity_type, direction or "", day, subject or "", body or ""])
    return hashlib.sha256(joined.encode()).hexdigest()


def _has_text() -> ColumnElement[bool]:
    return or_(
        func.length(func.trim(func.coalesce(Activity.body, ""))) > 0,
        func.length(func.trim(func.coalesce(Activity.subject, ""))) > 0,
    )


@dataclass(frozen=True)
class ActivitySnapshot:
    id: uuid.UUID
    version: int
    type: str
    direction: str | None
    occurred_at: datetime
    subject: str | None
    body: str | None
    contact_id: uuid.UUID | None
    deal_id: uuid.UUID | None
    company_id: uuid.UUID | None
    content_hash: str

    @property
    def text(self) -> str:
        """What is analysed and quoted: the body, or the subject of an activity without one."""
        if self.body and self.body.strip():
            return self.body
        return self.subject or ""


def _snapshot_select() -> Select[*tuple[Any, ...]]:
    """The columns of an ActivitySnapshot, in its field order; callers add the WHERE."""
    return select(
        Activity.id,
        Activity.version,
        Activity.type,
        Activity.direction,
        Activity.occurred_at,
        Activity.subject,
        Activity.body,
        Activity.contact_id,
        Activity.deal_id,
        Activity.company_id,
        content_hash_sql().label("content_hash"),
    )


def load_activity(session: Session, activity_id: uuid.UUID) -> ActivitySnapshot | None:
    row = session.execute(_snapshot_select().where(Activity.id == activity_id)).first()
    return None if row is None else ActivitySnapshot(**row._asdict())


def load_activities(session: Session, activity_ids: Collection[uuid.UUID]) -> list[ActivitySnapshot]:
    """Several activities at once (a record page's timeline), in no particular order."""
    if not activity_ids:
        return []
    rows = session.execute(_snapshot_select().where(Activity.id.in_(list(activity_ids))))
    return [ActivitySnapshot(**row._asdict()) for row in rows]


def analyses_of_many(session: Session, activity_ids: Collection[uuid.UUID]) -> list[ConversationAnalysisRow]:
    if not activity_ids:
        return []
    return list(
        session.scalars(
            select(ConversationAnalysisRow)
            .where(ConversationAnalysisRow.activity_id.in_(list(activity_ids)))
            .order_by(ConversationAnalysisRow.activity_id, ConversationAnalysisRow.analysis_version)
        )
    )


def waiting_for_many(session: Session, activity_ids: Collection[uuid.UUID]) -> list[ConversationWaiting]:
    if not activity_ids:
        return []
    return list(
        session.scalars(select(ConversationWaiting).where(ConversationWaiting.activity_id.in_(list(activity_ids))))
    )


def organization_name(session: Session, organization_id: uuid.UUID) -> str | None:
    name: str | None = session.scalar(select(Organization.name).where(Organization.id == organization_id))
    return name


def lock_activity(session: Session, activity_id: uuid.UUID) -> None:
    """Serialise writers of one activity's analyses (two deliveries of the same event, a sweep and a
    delivery) until the transaction ends; the CRM's own writes to the activity are not blocked."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": f"conversation:{activity_id}"}
    )


def analyses_of(session: Session, activity_id: uuid.UUID) -> list[ConversationAnalysisRow]:
    return list(
        session.scalars(
            select(ConversationAnalysisRow)
            .where(ConversationAnalysisRow.activity_id == activity_id)
            .order_by(ConversationAnalysisRow.analysis_version)
        )
    )


def latest_for_hash(session: Session, activity_id: uuid.UUID, content_hash: str) -> ConversationAnalysisRow | None:
    return session.scalars(
        select(ConversationAnalysisRow)
        .where(ConversationAnalysisRow.activity_id == activity_id, ConversationAnalysisRow.content_hash == content_hash)
        .order_by(ConversationAnalysisRow.analysis_version.desc())
        .limit(1)
    ).first()


def next_analysis_version(session: Session, activity_id: uuid.UUID) -> int:
    current = session.scalar(
        select(func.max(ConversationAnalysisRow.analysis_version)).where(
            ConversationAnalysisRow.activity_id == activity_id
        )
    )
    return int(current or 0) + 1


def store_analysis(session: Session, **values: Any) -> ConversationAnalysisRow:
    row = ConversationAnalysisRow(**values)
    session.add(row)
    session.flush()
    return row


def _analysed() -> ColumnElement[bool]:
    return exists().where(
        ConversationAnalysisRow.activity_id == Activity.id, ConversationAnalysisRow.content_hash == content_hash_sql()
    )


def _waiting() -> ColumnElement[bool]:
    """The current text failed for want of the model (a row for an earlier text does not count)."""
    return exists().where(
        ConversationWaiting.activity_id == Activity.id, ConversationWaiting.content_hash == content_hash_sql()
    )


def untried_activity_ids(session: Session, *, limit: int, after: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Activities with text whose current content has no analysis and no failed attempt, in id
    order (a page)."""
    statement = select(Activity.id).where(_has_text(), ~_analysed(), ~_waiting()).order_by(Activity.id).limit(limit)
    if after is not None:
        statement = statement.where(Activity.id > after)
    return list(session.scalars(statement))


def waiting_activity_ids(session: Session, *, limit: int, exclude: Collection[uuid.UUID] = ()) -> list[uuid.UUID]:
    """Activities whose current text waits for the model, the least recently tried first (a page)."""
    statement = (
        select(Activity.id)
        .join(ConversationWaiting, ConversationWaiting.activity_id == Activity.id)
        .where(ConversationWaiting.content_hash == content_hash_sql(), ~_analysed())
        .order_by(ConversationWaiting.last_attempt_at, Activity.id)
        .limit(limit)
    )
    if exclude:
        statement = statement.where(Activity.id.not_in(list(exclude)))
    return list(session.scalars(statement))


def never_analysed_activity_ids(session: Session, *, limit: int, after: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Activities with text that the LLM has never analysed (no analysis of any of their texts), in
    id order (a page): those the rules floor may propose tasks for."""
    analysed = exists().where(ConversationAnalysisRow.activity_id == Activity.id)
    statement = select(Activity.id).where(_has_text(), ~analysed).order_by(Activity.id).limit(limit)
    if after is not None:
        statement = statement.where(Activity.id > after)
    return list(session.scalars(statement))


def count_unanalysed(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Activity).where(_has_text(), ~_analysed())) or 0)


# --- activities waiting for the language model ----------------------------------------------------


def mark_waiting(
    session: Session, activity_id: uuid.UUID, content_hash: str, *, reason: str, message: str, now: datetime
) -> None:
    """Record (or count one more) failed attempt at analysing this text for want of the model; a
    new text starts its own count."""
    statement = insert(ConversationWaiting).values(
        activity_id=activity_id,
        content_hash=content_hash,
        reason=reason,
        message=message,
        attempts=1,
        since=now,
        last_attempt_at=now,
    )
    same_text = ConversationWaiting.content_hash == statement.excluded.content_hash
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[ConversationWaiting.activity_id],
            set_={  # the right-hand sides read the row as it was
                "attempts": case((same_text, ConversationWaiting.attempts + 1), else_=1),
                "since": case((same_text, ConversationWaiting.since), else_=statement.excluded.since),
                "content_hash": statement.excluded.content_hash,
                "reason": statement.excluded.reason,
                "message": statement.excluded.message,
                "last_attempt_at": statement.excluded.last_attempt_at,
            },
        )
    )


def waiting_for(session: Session, activity_id: uuid.UUID) -> ConversationWaiting | None:
    return session.get(ConversationWaiting, activity_id)


def clear_waiting(session: Session, activity_id: uuid.UUID) -> None:
    session.execute(delete(ConversationWaiting).where(ConversationWaiting.activity_id == activity_id))


# --- the competitor list --------------------------------------------------------------------------


def competitors(session: Session) -> list[Competitor]:
    rows = session.scalars(select(ConversationCompetitor).order_by(ConversationCompetitor.name))
    return [Competitor(row.name, tuple(row.aliases or ())) for row in rows]


def replace_competitors(session: Session, entries: Sequence[Competitor]) -> list[Competitor]:
    session.execute(delete(ConversationCompetitor))
    for entry in entries:
        session.add(ConversationCompetitor(name=entry.name, aliases=list(entry.aliases)))
    session.flush()
    return competitors(session)
