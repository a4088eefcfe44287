"""Storing cards (one per entity and rule, refreshed in place) and reading them with feedback."""

from __future__ import annotations

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
    lock_refresh(session)
    statement = select(Recommendation)
    if scope is not None:
        if not scope:
            return RefreshCounts()
        statement = statement.where(tuple_(Recommendation.entity_type, Recommendation.entity_id).in_(list(scope)))
    existing: dict[tuple[str, uuid.UUID, str], Recommendation] = {
        (r.entity_type, r.entity_id, r.rule): r for r in session.scalars(statement)
    }
    counts = RefreshCounts()
    expires = now + timedelta(days=config.card_ttl_days)
    organization_counts = FeedbackCounts(scope="none")
    seen: set[tuple[str, uuid.UUID, str]] = set()
    for candidate in candidates:
        key = (candidate.entity_type, candidate.entity_id, candidate.rule)
        seen.add(key)
        ranking = rank_candidate(candidate, organization_counts, config.feedback_prior)
        values: dict[str, Any] = {
            "type": candidate.type,
            "title": candidate.title[:300],
            "facts": {**candidate.facts, "action": candidate.action},
            "priority": priority_of(candidate.severity, candidate.overdue),
            "confidence": round(candidate.confidence, 3),
            "base_value": ranking.expected_value,
            "ranking": ranking.as_dict(),
            "owner_id": candidate.owner_id,
            "company_id": candidate.company_id,
            "expires_at": expires,
            "refreshed_at": now,
            "updated_at": now,
        }
        row = existing.get(key)
        if row is None:
            session.add(
                Recommendation(
                    entity_type=candidate.entity_type,
                    entity_id=candidate.entity_id,
                    rule=candidate.rule,
                    status="open",
                    trigger_key=candidate.trigger_key[:200],
                    created_at=now,
                    **values,
                )
            )
            counts.created += 1
            continue
        for name, value in values.items():
            setattr(row, name, value)
        reopen = False
        if row.status in CLOSED_STATUSES:
            reopen = row.closed_trigger_key != candidate.trigger_key[:200]
        elif row.status in HIDDEN:
            reopen = row.hidden_until is None or row.hidden_until <= now
        elif row.status in ("resolved", "expired"):
            reopen = True
        if reopen:
            row.status, row.hidden_until, row.closed_trigger_key = "open", None, None
            row.pending_action_id, row.apply_result = None, None
            counts.reopened += 1
        else:
            counts.updated += 1
        row.trigger_key = candidate.trigger_key[:200]
    for existing_key, row in existing.items():
        if existing_key not in seen and row.status in ("open", *HIDDEN):
            row.status, row.updated_at = "resolved", now
            counts.resolved += 1
    session.flush()
    return counts


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
