"""The facts the rules read, loaded from one organization's CRM and stored predictions.

Everything is read "as of" a moment (``now``): activities, stage history and scores after it are
ignored, so a replay can ask what the cards would have been on a past day. A whole organization
is loaded with a fixed number of grouped queries, whatever its size; one entity with the same
queries narrowed to its ids."""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, text
from sqlalchemy.orm import Session

from okyaku.db.models import Activity, Contact, Deal, PipelineStage, Task
from okyaku.recommendations.settings import RecommendationSettings

OPEN_TASK_STATUSES = ("open", "in_progress")


@dataclass(frozen=True)
class TaskFact:
    task_id: uuid.UUID
    title: str
    due_date: datetime


@dataclass(frozen=True)
class ScoreFact:
    """A stored prediction: 0-100, how it was made (model or prior), and when."""

    score: float
    method: str
    scored_at: datetime


@dataclass(frozen=True)
class StageNorm:
    """How long deals of this organization typically stay in a stage (median days), from its own
    stage history; ``source`` is "history", or "default" when too few stays were seen."""

    typical_days: float
    samples: int
    source: str


@dataclass(frozen=True)
class DealFacts:
    deal_id: uuid.UUID
    name: str
    amount: float | None
    currency: str
    stage_id: uuid.UUID
    stage_name: str
    stage_probability: float
    next_stage_id: uuid.UUID | None
    next_stage_name: str | None
    stage_entered_at: datetime
    created_at: datetime
    expected_close_date: date | None
    owner_id: uuid.UUID | None
    company_id: uuid.UUID | None
    contact_id: uuid.UUID | None
    contact_name: str | None
    contact_email: str | None
    last_activity_at: datetime | None
    open_tasks: int
    overdue_tasks: tuple[TaskFact, ...]
    proposal_sent_at: datetime | None
    forecast: ScoreFact | None
    stage_norm: StageNorm


@dataclass(frozen=True)
class ContactFacts:
    contact_id: uuid.UUID
    name: str
    email: str | None
    lifecycle_stage: str
    lead_status: str | None
    owner_id: uuid.UUID | None
    company_id: uuid.UUID | None
    created_at: datetime
    last_activity_at: datetime | None
    activity_count: int
    open_tasks: int
    overdue_tasks: tuple[TaskFact, ...]
    open_deals: int
    won_value: float
    lead_score: ScoreFact | None
    churn_risk: ScoreFact | None
    churn_risk_before: ScoreFact | None


@dataclass(frozen=True)
class OrganizationFacts:
    now: datetime
    typical_deal_value: float
    typical_value_source: str  # won deals | all deals | default
    currency: str


@dataclass
class FactSet:
    organization: OrganizationFacts
    deals: list[DealFacts] = field(default_factory=list)
    contacts: list[ContactFacts] = field(default_factory=list)


def person_name(first: str | None, last: str | None, email: str | None) -> str:
    return " ".join(p for p in (first, last) if p) or (email or "(no name)")


# --- organization-wide ---------------------------------------------------------------------------


# One round trip for the typical deal value, whatever the organization's size: each median's
# middle elements are picked in SQL (the amounts sorted there), and the arithmetic is
# ``statistics.median``'s, in Python, so the figure is the same as over the fetched amounts.
_DEAL_VALUES = text(
    """
    WITH amounts AS (
        SELECT array_agg(d.amount ORDER BY d.amount) FILTER (WHERE s.is_won) AS won,
               array_agg(d.amount ORDER BY d.amount) AS every
          FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id
         WHERE d.amount IS NOT NULL AND d.created_at <= :now
    )
    SELECT coalesce(cardinality(won), 0) AS won_n, won[(cardinality(won) + 1) / 2] AS won_low,
           won[cardinality(won) / 2 + 1] AS won_high,
           coalesce(cardinality(every), 0) AS every_n, every[(cardinality(every) + 1) / 2] AS every_low,
           every[cardinality(every) / 2 + 1] AS every_high,
           (SELECT currency FROM deals GROUP BY currency ORDER BY count(*) DESC LIMIT 1) AS currency
      FROM amounts
    """
)


def _median(n: int, low: Any, high: Any) -> float:
    """``statistics.median`` of n sorted floats given its middle one (odd n) or two (even n)."""
    return float(low) if n % 2 else (float(low) + float(high)) / 2


def organization_facts(session: Session, now: datetime, config: RecommendationSettings) -> OrganizationFacts:
    """The value of a typical deal: the median won amount, else the median of all amounts."""
    row = session.execute(_DEAL_VALUES, {"now": now}).one()
    currency = row.currency or "USD"
    if row.won_n >= config.min_value_samples:
        return OrganizationFacts(now, _median(row.won_n, row.won_low, row.won_high), "median won deal", currency)
    if row.every_n >= config.min_value_samples:
        return OrganizationFacts(now, _median(row.every_n, row.every_low, row.every_high), "median deal", currency)
    return OrganizationFacts(now, config.default_deal_value, "default (too few deals with an amount)", currency)


_STAGE_STAYS = text(
    """
    WITH stays AS (
        SELECT to_stage_id AS stage_id, changed_at AS entered,
               lead(changed_at) OVER (PARTITION BY deal_id ORDER BY changed_at, id) AS left_at
          FROM deal_stage_history
         WHERE changed_at <= :now
    )
    SELECT stage_id, EXTRACT(EPOCH FROM (left_at - entered)) / 86400.0 AS days
      FROM stays
     WHERE left_at IS NOT NULL
    """
)
# The same stays for a few stages only (one record's cards): the window over the histories of the
# deals that ever entered one of them, and nothing else. The deals are collected first, as an
# array (an init plan, run once), so that the history is read by deal id (0024's indexes) and no
# plan can turn it into a scan of the organization's history per row.
_STAGE_STAYS_OF = text(
    """
    WITH stays AS (
        SELECT to_stage_id AS stage_id, changed_at AS entered,
               lead(changed_at) OVER (PARTITION BY deal_id ORDER BY changed_at, id) AS left_at
          FROM deal_stage_history
         WHERE changed_at <= :now
           AND deal_id = ANY(ARRAY(
                SELECT deal_id FROM deal_stage_history WHERE to_stage_id = ANY(:stages) AND changed_at <= :now
           ))
    )
    SELECT stage_id, EXTRACT(EPOCH FROM (left_at - entered)) / 86400.0 AS days
      FROM stays
     WHERE left_at IS NOT NULL AND stage_id = ANY(:stages)
    """
)


def stage_norms(
    session: Session,
    now: datetime,
    config: RecommendationSettings,
    stage_ids: Sequence[uuid.UUID] | None = None,
) -> dict[uuid.UUID, StageNorm]:
    """Median days per stage over the completed stays in the organization's stage history (of
    every stage, or of ``stage_ids``); a stage with fewer than ``min_stage_samples`` stays gets
    the labelled default."""
    if stage_ids is None:
        rows = session.execute(_STAGE_STAYS, {"now": now})
    elif stage_ids:
        rows = session.execute(_STAGE_STAYS_OF, {"now": now, "stages": list(stage_ids)})
    else:
        return {}
    stays: dict[uuid.UUID, list[float]] = {}
    for row in rows:
        stays.setdefault(row.stage_id, []).append(float(row.days))
    return {
        stage_id: StageNorm(statistics.median(days), len(days), "history")
        if len(days) >= config.min_stage_samples
        else default_norm(len(days), config)
        for stage_id, days in stays.items()
    }


def default_norm(samples: int, config: RecommendationSettings) -> StageNorm:
    return StageNorm(float(config.default_stage_days), samples, "default")


# --- deals ---------------------------------------------------------------------------------------


def _ids_filter(column: Any, ids: Sequence[uuid.UUID] | None) -> Any:
    return column.in_(list(ids)) if ids is not None else text("TRUE")


def _open_tasks(
    session: Session, now: datetime, condition: Any
) -> list[tuple[uuid.UUID | None, uuid.UUID | None, TaskFact]]:
    rows = session.execute(
        select(Task.id, Task.title, Task.due_date, Task.deal_id, Task.contact_id).where(
            Task.status.in_(OPEN_TASK_STATUSES), Task.created_at <= now, condition
        )
    )
    return [(r.deal_id, r.contact_id, TaskFact(r.id, r.title, r.due_date or now + timedelta(days=365))) for r in rows]


# A target's scores are of one entity type; naming it lets ix_predictions_entity narrow by id.
_SCORED_ENTITY = {"lead_score": "contact", "churn_risk": "contact", "deal_forecast": "deal"}
_LATEST_SCORES = """
    (SELECT DISTINCT ON (entity_id) {ask} AS ask, entity_id, score, method, created_at
      FROM predictions
     WHERE target = :target_{ask} AND entity_type = :entity_type_{ask} AND created_at <= :now_{ask} {narrow}
     ORDER BY entity_id, created_at DESC)
"""


def _scores(
    session: Session, asks: Sequence[tuple[str, datetime]], ids: Sequence[uuid.UUID] | None
) -> list[dict[uuid.UUID, ScoreFact]]:
    """Per (target, moment) asked: the latest stored score at or before that moment per entity
    (predictions keep their history); all of them in one round trip."""
    params: dict[str, Any] = {}
    narrow = ""
    if ids is not None:
        narrow, params["ids"] = "AND entity_id = ANY(:ids)", list(ids)
    parts = []
    for ask, (target, moment) in enumerate(asks):
        params |= {f"target_{ask}": target, f"entity_type_{ask}": _SCORED_ENTITY[target], f"now_{ask}": moment}
        parts.append(_LATEST_SCORES.format(ask=ask, narrow=narrow))
    out: list[dict[uuid.UUID, ScoreFact]] = [{} for _ in asks]
    for r in session.execute(text(" UNION ALL ".join(parts)), params):
        out[r.ask][r.entity_id] = ScoreFact(float(r.score), str(r.method), r.created_at)
    return out


def load_deals(
    session: Session,
    now: datetime,
    config: RecommendationSettings,
    deal_ids: Sequence[uuid.UUID] | None = None,
) -> list[DealFacts]:
    """Facts of the open deals (all of them, or those of ``deal_ids``)."""
    stages = list(session.scalars(select(PipelineStage).order_by(PipelineStage.pipeline_id, PipelineStage.position)))
    by_pipeline: dict[uuid.UUID, list[PipelineStage]] = {}
    for stage in stages:
        by_pipeline.setdefault(stage.pipeline_id, []).append(stage)
    stage_by_id = {s.id: s for s in stages}
    deals = list(
        session.execute(
            select(
                Deal.id,
                Deal.name,
                Deal.amount,
                Deal.currency,
                Deal.pipeline_id,
                Deal.stage_id,
                Deal.stage_entered_at,
                Deal.created_at,
                Deal.expected_close_date,
                Deal.owner_id,
                Deal.company_id,
                Deal.contact_id,
                Contact.first_name,
                Contact.last_name,
                Contact.email,
            )
            .join(PipelineStage, PipelineStage.id == Deal.stage_id)
            .outerjoin(Contact, Contact.id == Deal.contact_id)
            .where(
                PipelineStage.is_won.is_(False),
                PipelineStage.is_lost.is_(False),
                Deal.created_at <= now,
                _ids_filter(Deal.id, deal_ids),
            )
        )
    )
    if not deals:
        return []
    ids = [d.id for d in deals]
    contact_ids = [d.contact_id for d in deals if d.contact_id is not None]
    narrow = deal_ids is not None
    # The last touch of each deal and its last proposal e-mail, in one pass over its activities.
    words = [f"%{w}%" for w in config.proposal_words]
    mentions = or_(*[Activity.subject.ilike(w) for w in words], *[Activity.body.ilike(w) for w in words])
    sent_proposal = and_(
        Activity.type == "email", or_(Activity.direction.is_(None), Activity.direction != "inbound"), mentions
    )
    deal_touch: dict[uuid.UUID, datetime] = {}
    proposals: dict[uuid.UUID, datetime] = {}
    for r in session.execute(
        select(
            Activity.deal_id,
            func.max(Activity.occurred_at).label("last"),
            func.max(Activity.occurred_at).filter(sent_proposal).label("proposal"),
        )
        .where(
            Activity.deal_id.is_not(None),
            Activity.occurred_at <= now,
            _ids_filter(Activity.deal_id, ids if narrow else None),
        )
        .group_by(Activity.deal_id)
    ):
        deal_touch[r.deal_id] = r.last
        if r.proposal is not None:
            proposals[r.deal_id] = r.proposal
    contact_touch = dict(
        session.execute(
            select(Activity.contact_id, func.max(Activity.occurred_at))
            .where(
                Activity.contact_id.is_not(None),
                Activity.occurred_at <= now,
                _ids_filter(Activity.contact_id, contact_ids if narrow else None),
            )
            .group_by(Activity.contact_id)
        ).all()
    )
    tasks: dict[uuid.UUID, list[TaskFact]] = {}
    for deal_id, _contact, fact in _open_tasks(
        session, now, and_(Task.deal_id.is_not(None), _ids_filter(Task.deal_id, ids if narrow else None))
    ):
        assert deal_id is not None
        tasks.setdefault(deal_id, []).append(fact)
    (forecasts,) = _scores(session, [("deal_forecast", now)], ids if narrow else None)
    norms = stage_norms(session, now, config, sorted({d.stage_id for d in deals}) if narrow else None)
    out: list[DealFacts] = []
    for d in deals:
        pipeline_stages = [s for s in by_pipeline.get(d.pipeline_id, []) if not (s.is_won or s.is_lost)]
        current = stage_by_id[d.stage_id]
        later = [s for s in pipeline_stages if s.position > current.position]
        touches = [t for t in (deal_touch.get(d.id), contact_touch.get(d.contact_id)) if t is not None]
        open_tasks = tasks.get(d.id, [])
        out.append(
            DealFacts(
                deal_id=d.id,
                name=d.name,
                amount=float(d.amount) if d.amount is not None else None,
                currency=d.currency,
                stage_id=d.stage_id,
                stage_name=current.name,
                stage_probability=float(current.probability),
                next_stage_id=later[0].id if later else None,
                next_stage_name=later[0].name if later else None,
                stage_entered_at=min(d.stage_entered_at, now),
                created_at=d.created_at,
                expected_close_date=d.expected_close_date,
                owner_id=d.owner_id,
                company_id=d.company_id,
                contact_id=d.contact_id,
                contact_name=person_name(d.first_name, d.last_name, d.email) if d.contact_id else None,
                contact_email=d.email,
                last_activity_at=max(touches) if touches else None,
                open_tasks=len(open_tasks),
                overdue_tasks=tuple(sorted((t for t in open_tasks if t.due_date < now), key=lambda t: t.due_date)),
                proposal_sent_at=proposals.get(d.id),
                forecast=forecasts.get(d.id),
                stage_norm=norms.get(d.stage_id) or default_norm(0, config),
            )
        )
    return out


# --- contacts ------------------------------------------------------------------------------------


def load_contacts(
    session: Session,
    now: datetime,
    config: RecommendationSettings,
    contact_ids: Sequence[uuid.UUID] | None = None,
) -> list[ContactFacts]:
    """Facts of the contacts the contact rules look at (all, or those of ``contact_ids``)."""
    contacts = list(
        session.execute(
            select(
                Contact.id,
                Contact.first_name,
                Contact.last_name,
                Contact.email,
                Contact.lifecycle_stage,
                Contact.lead_status,
                Contact.owner_id,
                Contact.company_id,
                Contact.created_at,
            ).where(Contact.created_at <= now, _ids_filter(Contact.id, contact_ids))
        )
    )
    if not contacts:
        return []
    ids = [c.id for c in contacts]
    narrow = contact_ids is not None
    activity = {
        r.contact_id: (r.last, int(r.n))
        for r in session.execute(
            select(
                Activity.contact_id,
                func.max(Activity.occurred_at).label("last"),
                func.count().label("n"),
            )
            .where(
                Activity.contact_id.is_not(None),
                Activity.occurred_at <= now,
                _ids_filter(Activity.contact_id, ids if narrow else None),
            )
            .group_by(Activity.contact_id)
        )
    }
    deal_counts: dict[uuid.UUID, tuple[int, float]] = {}
    for r in session.execute(
        select(
            Deal.contact_id,
            func.count().filter(and_(PipelineStage.is_won.is_(False), PipelineStage.is_lost.is_(False))).label("open"),
            func.coalesce(func.sum(Deal.amount).filter(PipelineStage.is_won.is_(True)), 0).label("won"),
        )
        .join(PipelineStage, PipelineStage.id == Deal.stage_id)
        .where(Deal.contact_id.is_not(None), _ids_filter(Deal.contact_id, ids if narrow else None))
        .group_by(Deal.contact_id)
    ):
        deal_counts[r.contact_id] = (int(r.open), float(r.won))
    tasks: dict[uuid.UUID, list[TaskFact]] = {}
    overdue_elsewhere: set[uuid.UUID] = set()
    for deal_id, contact_id, fact in _open_tasks(
        session, now, and_(Task.contact_id.is_not(None), _ids_filter(Task.contact_id, ids if narrow else None))
    ):
        assert contact_id is not None
        tasks.setdefault(contact_id, []).append(fact)
        if deal_id is not None:  # a deal's task is that deal's card; the contact still counts it as open
            overdue_elsewhere.add(fact.task_id)
    scope = ids if narrow else None
    before = now - timedelta(days=config.churn_lookback_days)
    leads, churn, churn_before = _scores(
        session, [("lead_score", now), ("churn_risk", now), ("churn_risk", before)], scope
    )
    out = []
    for c in contacts:
        last, count = activity.get(c.id, (None, 0))
        open_deals, won = deal_counts.get(c.id, (0, 0.0))
        open_tasks = tasks.get(c.id, [])
        out.append(
            ContactFacts(
                contact_id=c.id,
                name=person_name(c.first_name, c.last_name, c.email),
                email=c.email,
                lifecycle_stage=c.lifecycle_stage,
                lead_status=c.lead_status,
                owner_id=c.owner_id,
                company_id=c.company_id,
                created_at=c.created_at,
                last_activity_at=last,
                activity_count=count,
                open_tasks=len(open_tasks),
                overdue_tasks=tuple(
                    sorted(
                        (t for t in open_tasks if t.due_date < now and t.task_id not in overdue_elsewhere),
                        key=lambda t: t.due_date,
                    )
                ),
                open_deals=open_deals,
                won_value=won,
                lead_score=leads.get(c.id),
                churn_risk=churn.get(c.id),
                churn_risk_before=churn_before.get(c.id),
            )
        )
    return out


def load_facts(
    session: Session,
    now: datetime,
    config: RecommendationSettings,
    *,
    deal_ids: Sequence[uuid.UUID] | None = None,
    contact_ids: Sequence[uuid.UUID] | None = None,
) -> FactSet:
    """The organization's facts, or only those of the given deals and contacts (an empty list
    loads none of that kind)."""
    facts = FactSet(organization_facts(session, now, config))
    if deal_ids is None or deal_ids:
        facts.deals = load_deals(session, now, config, deal_ids)
    if contact_ids is None or contact_ids:
        facts.contacts = load_contacts(session, now, config, contact_ids)
    return facts
