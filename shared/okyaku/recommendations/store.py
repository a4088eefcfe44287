"""Storing cards (one per entity and rule, refreshed in place) and reading them with feedback."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text, tuple_
from sqlalchemy.orm import Session

from okyaku.recommendations.models import CLOSED_STATUSES, Recommendation, RecommendationFeedback
from okyaku.recommendations.ranking import ACCEPTED, REJECTED, FeedbackCounts, priority_of, rank_candidate
from okyaku.recommendations.rules import Candidate
from okyaku.recommendations.settings import RecommendationSettings

EntityKey = tuple[str, uuid.UUID]
HIDDEN = ("snoozed", "dismissed")


@dataclass
class RefreshCounts:
    created: int = 0
    updated: int = 0
    reopened: int = 0
    resolved: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"created": self.created, "updated": self.updated, "reopened": self.reopened, "resolved": self.resolved}


def lock_refresh(session: Session) -> None:
    """One refresh per organization at a time: two would race on the same (entity, rule) rows."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('recommendations:' || current_setting('app.organization_id')))")
    )


_COLUMNS = (
    ("id", "uuid"),
    ("entity_type", "text"),
    ("entity_id", "uuid"),
    ("rule", "text"),
    ("type", "text"),
    ("status", "text"),
    ("title", "text"),
    ("facts", "jsonb"),
    ("trigger_key", "text"),
    ("priority", "smallint"),
    ("confidence", "float8"),
    ("base_value", "float8"),
    ("ranking", "jsonb"),
    ("owner_id", "uuid"),
    ("company_id", "uuid"),
    ("hidden_until", "timestamptz"),
    ("closed_trigger_key", "text"),
    ("pending_action_id", "uuid"),
    ("apply_result", "jsonb"),
    ("expires_at", "timestamptz"),
    ("refreshed_at", "timestamptz"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
_KEPT_ON_UPDATE = ("id", "entity_type", "entity_id", "rule", "created_at")
# One statement for every card of a refresh, whatever their number: rows as one JSON document.
_UPSERT = text(
    f"""
    INSERT INTO recommendations ({_NAMES})
    SELECT {_NAMES}
      FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({", ".join(f"{n} {t}" for n, t in _COLUMNS)})
    ON CONFLICT (organization_id, entity_type, entity_id, rule) DO UPDATE
       SET {", ".join(f"{n} = EXCLUDED.{n}" for n, _ in _COLUMNS if n not in _KEPT_ON_UPDATE)}
    """
)
_RESOLVE = text("UPDATE recommendations SET status = 'resolved', updated_at = :now WHERE id = ANY(:ids)")


def _next_state(row: Any, trigger_key: str, now: datetime) -> tuple[dict[str, Any], bool]:
    """What a refresh keeps of an existing card's state, and whether it reopens it."""
    kept = {
        "status": row.status,
        "hidden_until": row.hidden_until,
        "closed_trigger_key": row.closed_trigger_key,
        "pending_action_id": row.pending_action_id,
        "apply_result": row.apply_result,
    }
    if row.status in CLOSED_STATUSES:
        reopen = row.closed_trigger_key != trigger_key
    elif row.status in HIDDEN:
        reopen = row.hidden_until is None or row.hidden_until <= now
    else:
        reopen = row.status in ("resolved", "expired")
    if reopen:
        kept = dict.fromkeys(kept) | {"status": "open"}
    return kept, reopen


def store_candidates(
    session: Session,
    candidates: Sequence[Candidate],
    *,
    scope: Sequence[EntityKey] | None,
    now: datetime,
    config: RecommendationSettings,
) -> RefreshCounts:
    """Upsert one card per (entity, rule); cards of the ``scope`` (None: the whole organization)
    whose rule no longer fires are resolved. Dismissed and snoozed cards stay hidden until their
    time; a card closed as done or applied reopens only for a new situation (``trigger_key``)."""
    if scope is not None and not scope:
        return RefreshCounts()
    lock_refresh(session)
    columns = (
        Recommendation.id,
        Recommendation.entity_type,
        Recommendation.entity_id,
        Recommendation.rule,
        Recommendation.status,
        Recommendation.hidden_until,
        Recommendation.closed_trigger_key,
        Recommendation.pending_action_id,
        Recommendation.apply_result,
        Recommendation.created_at,
    )
    statement = select(*columns)
    if scope is not None:
        statement = statement.where(tuple_(Recommendation.entity_type, Recommendation.entity_id).in_(list(scope)))
    existing = {(r.entity_type, r.entity_id, r.rule): r for r in session.execute(statement)}
    counts = RefreshCounts()
    expires = now + timedelta(days=config.card_ttl_days)
    no_feedback = FeedbackCounts(scope="none")  # stored without feedback; readers apply theirs
    seen: set[tuple[str, uuid.UUID, str]] = set()
    rows: list[dict[str, Any]] = []
    for candidate in candidates:
        key: tuple[str, uuid.UUID, str] = (candidate.entity_type, candidate.entity_id, candidate.rule)
        if key in seen:
            continue
        seen.add(key)
        trigger_key = candidate.trigger_key[:200]
        ranking = rank_candidate(candidate, no_feedback, config.feedback_prior)
        old = existing.get(key)
        if old is None:
            state: dict[str, Any] = dict.fromkeys(("hidden_until", "closed_trigger_key", "pending_action_id"))
            state |= {"status": "open", "apply_result": None}
            counts.created += 1
        else:
            state, reopened = _next_state(old, trigger_key, now)
            counts.reopened += reopened
            counts.updated += not reopened
        rows.append(
            {
                "id": old.id if old is not None else uuid.uuid4(),
                "entity_type": candidate.entity_type,
                "entity_id": candidate.entity_id,
                "rule": candidate.rule,
                "type": candidate.type,
                "title": candidate.title[:300],
                "facts": {**candidate.facts, "action": candidate.action},
                "trigger_key": trigger_key,
                "priority": priority_of(candidate.severity, candidate.overdue),
                "confidence": round(candidate.confidence, 3),
                "base_value": ranking.expected_value,
                "ranking": ranking.as_dict(),
                "owner_id": candidate.owner_id,
                "company_id": candidate.company_id,
                "expires_at": expires,
                "refreshed_at": now,
                "created_at": old.created_at if old is not None else now,
                "updated_at": now,
                **state,
            }
        )
    if rows:
        session.execute(_UPSERT, {"rows": json.dumps(rows, default=_json_default)})
    resolved = [r.id for k, r in existing.items() if k not in seen and r.status in ("open", *HIDDEN)]
    if resolved:
        session.execute(_RESOLVE, {"now": now, "ids": resolved})
        counts.resolved = len(resolved)
    return counts


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # UUIDs


def visible(now: datetime) -> Any:
    """Cards a person should see now: open and not expired, or hidden until a time now passed."""
    return and_(
        Recommendation.expires_at > now,
        or_(
            Recommendation.status == "open",
            and_(Recommendation.status.in_(HIDDEN), Recommendation.hidden_until <= now),
        ),
    )


def feedback_counts(session: Session, user_id: uuid.UUID | None, since: datetime) -> dict[str, FeedbackCounts]:
    """Per type: the user's own feedback where they gave some on that type, else the organization's."""
    rows = session.execute(
        select(
            RecommendationFeedback.type, RecommendationFeedback.user_id, RecommendationFeedback.feedback, func.count()
        )
        .where(RecommendationFeedback.created_at >= since)
        .group_by(RecommendationFeedback.type, RecommendationFeedback.user_id, RecommendationFeedback.feedback)
    ).all()
    mine: dict[str, list[int]] = {}
    everyone: dict[str, list[int]] = {}
    for type_, user, kind, n in rows:
        slot = 0 if kind in ACCEPTED else 1 if kind in REJECTED else None
        if slot is None:
            continue
        everyone.setdefault(type_, [0, 0])[slot] += int(n)
        if user_id is not None and user == user_id:
            mine.setdefault(type_, [0, 0])[slot] += int(n)
    out = {t: FeedbackCounts(a, r, "organization") for t, (a, r) in everyone.items()}
    out.update({t: FeedbackCounts(a, r, "user") for t, (a, r) in mine.items()})
    return out


def record_feedback(
    session: Session,
    card: Recommendation,
    *,
    user_id: uuid.UUID | None,
    kind: str,
    until: datetime | None,
    comment: str | None,
    now: datetime,
) -> RecommendationFeedback:
    row = RecommendationFeedback(
        recommendation_id=card.id,
        user_id=user_id,
        type=card.type,
        rule=card.rule,
        feedback=kind,
        until=until,
        comment=comment,
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def acceptance_by_type(session: Session, since: datetime) -> list[dict[str, Any]]:
    """Per type: cards shown, each kind of feedback, and accepted / (accepted + rejected)."""
    shown = dict(
        session.execute(
            select(Recommendation.type, func.count())
            .where(Recommendation.created_at >= since)
            .group_by(Recommendation.type)
        ).all()
    )
    kinds: dict[str, dict[str, int]] = {}
    for type_, kind, n in session.execute(
        select(RecommendationFeedback.type, RecommendationFeedback.feedback, func.count())
        .where(RecommendationFeedback.created_at >= since)
        .group_by(RecommendationFeedback.type, RecommendationFeedback.feedback)
    ):
        kinds.setdefault(type_, {})[kind] = int(n)
    out = []
    for type_ in sorted(set(shown) | set(kinds)):
        counts = kinds.get(type_, {})
        accepted = sum(counts.get(k, 0) for k in ACCEPTED)
        rejected = sum(counts.get(k, 0) for k in REJECTED)
        out.append(
            {
                "type": type_,
                "cards": int(shown.get(type_, 0)),
                "feedback": counts,
                "accepted": accepted,
                "rejected": rejected,
                "acceptance_rate": round(accepted / (accepted + rejected), 4) if accepted + rejected else None,
            }
        )
    return out
