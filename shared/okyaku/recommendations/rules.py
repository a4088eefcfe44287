"""Candidate rules: typed, pure functions from facts to a card, or None when the facts do not hold.

Every rule states the facts that triggered it (they are stored with the card and are the only
thing the explanation may talk about), a ``severity`` in (0, 1] (how far past its threshold),
``overdue`` (the same as a ratio beyond the threshold, for urgency), a ``confidence`` in [0, 1]
(how much the facts can be trusted: a fact in the CRM 0.9, a model's score 0.8, a rule-based
prior or a default norm 0.5), the value at stake and the score in play (for the ranking), a
``trigger_key`` naming the situation, and the concrete ``action`` that apply would carry out.

The rules:

====================  ======  ===================  ========================================================
rule                  entity  type                 fires when
====================  ======  ===================  ========================================================
deal_no_touch         deal    schedule_call        open deal, no activity on it or its contact for
                                                   ``deal_stale_days``
deal_past_close_date  deal    follow_up            open deal whose expected close date has passed
deal_stage_stalled    deal    update_deal_stage    in its stage longer than ``stall_factor`` x the stage's
                                                   median stay in this organization's history (default
                                                   ``default_stage_days`` with fewer than
                                                   ``min_stage_samples`` stays, labelled)
proposal_not_sent     deal    send_proposal        stage named like a proposal stage, no outbound email
                                                   about a proposal/quote/pricing on the deal
overdue_tasks         deal,   follow_up            open tasks past their due date (a contact's: those not
                      contact                      linked to a deal)
hot_lead_unattended   contact create_task          lead score >= ``hot_lead_score``, lead not yet a
                                                   customer, and no owner or no open task
hot_lead_no_touch     contact send_email           hot lead with no activity for ``lead_stale_days``
churn_risk_rising     contact schedule_call        customer whose churn risk rose ``churn_rise_points`` over
                                                   ``churn_lookback_days`` and is >= ``churn_min_risk``
re_engage_quiet       contact re_engage            >= ``quiet_min_activities`` activities, none for
                                                   ``quiet_days``, no open deal, not a hot lead
====================  ======  ===================  ========================================================
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from okyaku.recommendations.facts import DealFacts, OrganizationFacts, ScoreFact
from okyaku.recommendations.settings import RecommendationSettings

RecommendationType = Literal[
    "send_email",
    "schedule_call",
    "create_task",
    "update_deal_stage",
    "add_note",
    "send_proposal",
    "follow_up",
    "re_engage",
]
EntityType = Literal["deal", "contact"]
LEAD_STAGES = ("subscriber", "lead", "mql", "sql", "opportunity")
CUSTOMER_STAGES = ("customer", "evangelist")
FACT_CONFIDENCE = 0.9
MODEL_CONFIDENCE = 0.8
PRIOR_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Candidate:
    entity_type: EntityType
    entity_id: uuid.UUID
    rule: str
    type: RecommendationType
    title: str
    facts: dict[str, Any]
    trigger_key: str
    severity: float
    overdue: float
    confidence: float
    value: float
    value_source: str
    score: float  # 0-1: the model's score in play (win probability, lead score, churn risk)
    score_source: str
    action: dict[str, Any]
    owner_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    subject: str = ""  # the deal's or contact's name
    related: dict[str, str] = field(default_factory=dict)


def days_between(later: datetime, earlier: datetime) -> float:
    return max((later - earlier).total_seconds() / 86400.0, 0.0)


def beyond(value: float, threshold: float) -> tuple[float, float]:
    """(severity, overdue) of ``value`` past ``threshold``: severity 0.5 at the threshold, 1 at
    twice it; overdue the ratio beyond it."""
    threshold = max(threshold, 1e-9)
    return min(1.0, value / (2 * threshold)), max(value - threshold, 0.0) / threshold


def jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def score_confidence(score: ScoreFact | None) -> float:
    if score is None:
        return PRIOR_CONFIDENCE
    return MODEL_CONFIDENCE if score.method == "model" else PRIOR_CONFIDENCE


# --- deals ---------------------------------------------------------------------------------------


def _deal_value(deal: DealFacts, org: OrganizationFacts) -> tuple[float, str]:
    if deal.amount is not None and deal.amount > 0:
        return deal.amount, "deal amount"
    return org.typical_deal_value, f"no amount: {org.typical_value_source}"


def _deal_score(deal: DealFacts) -> tuple[float, str]:
    if deal.forecast is not None:
        return deal.forecast.score / 100.0, f"deal forecast ({deal.forecast.method})"
    return deal.stage_probability, "stage probability"


def _deal_candidate(
    deal: DealFacts,
    org: OrganizationFacts,
    *,
    rule: str,
    type: RecommendationType,
    title: str,
    facts: dict[str, Any],
    trigger_key: str,
    severity: float,
    overdue: float,
    confidence: float,
    action: dict[str, Any],
) -> Candidate:
    value, value_source = _deal_value(deal, org)
    score, score_source = _deal_score(deal)
    base = {"deal": deal.name, "stage": deal.stage_name, "amount": deal.amount, "currency": deal.currency}
    related = {"deal_id": str(deal.deal_id)}
    if deal.contact_id:
        related["contact_id"] = str(deal.contact_id)
    if deal.company_id:
        related["company_id"] = str(deal.company_id)
    return Candidate(
        entity_type="deal",
        entity_id=deal.deal_id,
        rule=rule,
        type=type,
        title=title,
        facts={**base, **{k: jsonable(v) for k, v in facts.items()}},
        trigger_key=trigger_key,
        severity=severity,
        overdue=overdue,
        confidence=confidence,
        value=value,
        value_source=value_source,
        score=score,
        score_source=score_source,
        action={**action, "links": related},
        owner_id=deal.owner_id,
        company_id=deal.company_id,
        subject=deal.name,
        related=related,
    )


def deal_no_touch(deal: DealFacts, org: OrganizationFacts, config: RecommendationSettings) -> Candidate | None:
    since = deal.last_activity_at or deal.created_at
    days = days_between(org.now, since)
    if days < config.deal_stale_days:
        return None
    severity, overdue = beyond(days, config.deal_stale_days)
    who = deal.contact_name or "the buyer"
    return _deal_candidate(
        deal,
        org,
        rule="deal_no_touch",
        type="schedule_call",
        title=f"Call {who}: no touch on {deal.name} for {days:.0f} days",
        facts={
            "days_since_last_touch": round(days),
            "last_touch_at": deal.last_activity_at,
            "threshold_days": config.deal_stale_days,
            "contact": deal.contact_name,
        },
        trigger_key=f"last_touch={since.date().isoformat()}",
        severity=severity,
        overdue=overdue,
        confidence=FACT_CONFIDENCE,
        action={"kind": "task", "title": f"Call {who} about {deal.name}", "due_in_days": 1, "priority": "high"},
    )


def deal_past_close_date(deal: DealFacts, org: OrganizationFacts, config: RecommendationSettings) -> Candidate | None:
    if deal.expected_close_date is None or deal.expected_close_date >= org.now.date():
        return None
    days = float((org.now.date() - deal.expected_close_date).days)
    severity, overdue = beyond(days + config.deal_stale_days, config.deal_stale_days)
    who = deal.contact_name or "the buyer"
    return _deal_candidate(
        deal,
        org,
        rule="deal_past_close_date",
        type="follow_up",
        title=f"Confirm the timeline of {deal.name}: expected to close {days:.0f} days ago",
        facts={"expected_close_date": deal.expected_close_date, "days_past_close_date": round(days)},
        trigger_key=f"expected_close={deal.expected_close_date.isoformat()}",
        severity=severity,
        overdue=overdue,
        confidence=FACT_CONFIDENCE,
        action={
            "kind": "task",
            "title": f"Confirm the timeline with {who} and update the close date of {deal.name}",
            "due_in_days": 1,
            "priority": "normal",
        },
    )


def deal_stage_stalled(deal: DealFacts, org: OrganizationFacts, config: RecommendationSettings) -> Candidate | None:
    norm = deal.stage_norm
    limit = config.stall_factor * norm.typical_days
    days = days_between(org.now, deal.stage_entered_at)
    if days <= limit:
        return None
    severity, overdue = beyond(days, limit)
    basis = (
        f"median of {norm.samples} past stays in this stage"
        if norm.source == "history"
        else f"default: only {norm.samples} past stays in this stage"
    )
    if deal.next_stage_id is not None:
        action: dict[str, Any] = {
            "kind": "stage",
            "stage_id": str(deal.next_stage_id),
            "stage_name": deal.next_stage_name,
        }
        title = f"Move {deal.name} on: {days:.0f} days in {deal.stage_name} (typically {norm.typical_days:.0f})"
    else:
        action = {"kind": "task", "title": f"Decide to close or re-qualify {deal.name}", "due_in_days": 2}
        title = f"Close or re-qualify {deal.name}: {days:.0f} days in {deal.stage_name}"
    return _deal_candidate(
        deal,
        org,
        rule="deal_stage_stalled",
        type="update_deal_stage",
        title=title,
        facts={
            "days_in_stage": round(days),
            "typical_days_in_stage": round(norm.typical_days, 1),
            "stall_limit_days": round(limit, 1),
            "typical_basis": basis,
            "norm_source": norm.source,
            "next_stage": deal.next_stage_name,
        },
        trigger_key=f"stage={deal.stage_id}@{deal.stage_entered_at.date().isoformat()}",
        severity=severity,
        overdue=overdue,
        confidence=MODEL_CONFIDENCE if norm.source == "history" else PRIOR_CONFIDENCE,
        action=action,
    )


def proposal_not_sent(deal: DealFacts, org: OrganizationFacts, config: RecommendationSettings) -> Candidate | None:
    stage = deal.stage_name.casefold()
    if not any(word in stage for word in config.proposal_stage_words) or deal.proposal_sent_at is not None:
        return None
    days = days_between(org.now, deal.stage_entered_at)
    severity, overdue = beyond(days + config.lead_stale_days, config.lead_stale_days)
    if deal.contact_id and deal.contact_email:
        action: dict[str, Any] = {
            "kind": "email",
            "contact_id": str(deal.contact_id),
            "subject": f"Proposal: {deal.name}",
            "body": f"Hello {deal.contact_name},\n\nas discussed, here is our proposal for {deal.name}.\n",
        }
    else:
        action = {"kind": "task", "title": f"Send the proposal for {deal.name}", "due_in_days": 1, "priority": "high"}
    return _deal_candidate(
        deal,
        org,
        rule="proposal_not_sent",
        type="send_proposal",
        title=f"Send the proposal for {deal.name}: in {deal.stage_name} for {days:.0f} days, none sent",
        facts={
            "days_in_stage": round(days),
            "proposal_email_found": False,
            "looked_for": list(config.proposal_words),
            "contact": deal.contact_name,
        },
        trigger_key=f"stage={deal.stage_id}@{deal.stage_entered_at.date().isoformat()}",
        severity=severity,
        overdue=overdue,
        confidence=0.7,  # a proposal sent outside the CRM, or named otherwise, is not seen
        action=action,
    )


def overdue_summary(tasks: tuple[Any, ...], now: datetime) -> tuple[dict[str, Any], str, float] | None:
    if not tasks:
        return None
    oldest = tasks[0]
    days = days_between(now, oldest.due_date)
    facts = {
        "overdue_tasks": len(tasks),
        "oldest_overdue_task": oldest.title,
        "oldest_due_date": oldest.due_date.date().isoformat(),
        "days_overdue": round(days),
    }
    return facts, ",".join(sorted(str(t.task_id) for t in tasks)), days


def deal_overdue_tasks(deal: DealFacts, org: OrganizationFacts, config: RecommendationSettings) -> Candidate | None:
    found = overdue_summary(deal.overdue_tasks, org.now)
    if found is None:
        return None
    facts, key, days = found
    severity, overdue = beyond(days + config.lead_stale_days, config.lead_stale_days)
    oldest = deal.overdue_tasks[0]
    return _deal_candidate(
        deal,
        org,
        rule="overdue_tasks",
        type="follow_up",
        title=f"{len(deal.overdue_tasks)} overdue task(s) on {deal.name}: '{oldest.title}'",
        facts=facts,
        trigger_key=f"tasks={key}",
        severity=severity,
        overdue=overdue,
        confidence=FACT_CONFIDENCE,
        action={"kind": "task_due", "task_id": str(oldest.task_id), "title": oldest.title, "due_in_days": 1},
    )


DealRule = Callable[[DealFacts, OrganizationFacts, RecommendationSettings], Candidate | None]
DEAL_RULES: tuple[DealRule, ...] = (
    deal_no_touch,
    deal_past_close_date,
    deal_stage_stalled,
    proposal_not_sent,
    deal_overdue_tasks,
)
