"""Candidate rules on contacts (see ``rules`` for the table of every rule and what a card holds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from okyaku.recommendations.facts import ContactFacts, OrganizationFacts, ScoreFact
from okyaku.recommendations.rules import (
    CUSTOMER_STAGES,
    FACT_CONFIDENCE,
    LEAD_STAGES,
    PRIOR_CONFIDENCE,
    Candidate,
    RecommendationType,
    beyond,
    days_between,
    jsonable,
    overdue_summary,
    score_confidence,
)
from okyaku.recommendations.settings import RecommendationSettings


def _is_hot(contact: ContactFacts, config: RecommendationSettings) -> bool:
    return (
        contact.lifecycle_stage in LEAD_STAGES
        and contact.lead_score is not None
        and contact.lead_score.score >= config.hot_lead_score
    )


def _contact_candidate(
    contact: ContactFacts,
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
    value: tuple[float, str],
    score: tuple[float, str],
) -> Candidate:
    related = {"contact_id": str(contact.contact_id)}
    if contact.company_id:
        related["company_id"] = str(contact.company_id)
    base: dict[str, Any] = {"contact": contact.name, "lifecycle_stage": contact.lifecycle_stage}
    return Candidate(
        entity_type="contact",
        entity_id=contact.contact_id,
        rule=rule,
        type=type,
        title=title,
        facts={**base, **{k: jsonable(v) for k, v in facts.items()}},
        trigger_key=trigger_key,
        severity=severity,
        overdue=overdue,
        confidence=confidence,
        value=value[0],
        value_source=value[1],
        score=score[0],
        score_source=score[1],
        action={**action, "links": related},
        owner_id=contact.owner_id,
        company_id=contact.company_id,
        subject=contact.name,
        related=related,
    )


def _lead_value(org: OrganizationFacts) -> tuple[float, str]:
    return org.typical_deal_value, f"a converted lead: {org.typical_value_source}"


def _customer_value(contact: ContactFacts, org: OrganizationFacts) -> tuple[float, str]:
    if contact.won_value > 0:
        return contact.won_value, "won deals of this contact"
    return org.typical_deal_value, f"no won deal on record: {org.typical_value_source}"


def _lead_score(score: ScoreFact) -> tuple[float, str]:
    return score.score / 100.0, f"lead score ({score.method})"


def _email_or_task(contact: ContactFacts, subject: str, body: str, task_title: str) -> dict[str, Any]:
    if contact.email:
        return {"kind": "email", "contact_id": str(contact.contact_id), "subject": subject, "body": body}
    return {"kind": "task", "title": task_title, "due_in_days": 1, "priority": "high"}


def hot_lead_unattended(
    contact: ContactFacts, org: OrganizationFacts, config: RecommendationSettings
) -> Candidate | None:
    if not _is_hot(contact, config) or (contact.owner_id is not None and contact.open_tasks > 0):
        return None
    assert contact.lead_score is not None
    missing = "no owner" if contact.owner_id is None else "no follow-up task"
    if contact.owner_id is None and contact.open_tasks == 0:
        missing = "no owner and no follow-up task"
    score = contact.lead_score.score
    severity, overdue = beyond(score, config.hot_lead_score)
    return _contact_candidate(
        contact,
        org,
        rule="hot_lead_unattended",
        type="create_task",
        title=f"Hot lead {contact.name} (score {score:.0f}) has {missing}",
        facts={
            "lead_score": round(score),
            "hot_from": config.hot_lead_score,
            "has_owner": contact.owner_id is not None,
            "open_tasks": contact.open_tasks,
        },
        trigger_key=f"owner={'set' if contact.owner_id else 'none'};open_tasks={contact.open_tasks}",
        severity=severity,
        overdue=overdue,
        confidence=score_confidence(contact.lead_score),
        action={
            "kind": "task",
            "title": f"Follow up with {contact.name} (hot lead)",
            "due_in_days": 1,
            "priority": "high",
        },
        value=_lead_value(org),
        score=_lead_score(contact.lead_score),
    )


def hot_lead_no_touch(
    contact: ContactFacts, org: OrganizationFacts, config: RecommendationSettings
) -> Candidate | None:
    if not _is_hot(contact, config):
        return None
    assert contact.lead_score is not None
    since = contact.last_activity_at or contact.created_at
    days = days_between(org.now, since)
    if days < config.lead_stale_days:
        return None
    severity, overdue = beyond(days, config.lead_stale_days)
    score = contact.lead_score.score
    return _contact_candidate(
        contact,
        org,
        rule="hot_lead_no_touch",
        type="send_email",
        title=f"Email {contact.name}: hot lead (score {score:.0f}), no touch for {days:.0f} days",
        facts={
            "lead_score": round(score),
            "days_since_last_touch": round(days),
            "last_touch_at": contact.last_activity_at,
            "threshold_days": config.lead_stale_days,
        },
        trigger_key=f"last_touch={since.date().isoformat()}",
        severity=severity,
        overdue=overdue,
        confidence=score_confidence(contact.lead_score),
        action=_email_or_task(
            contact,
            "Following up",
            f"Hello {contact.name},\n\nI wanted to follow up on our last conversation.\n",
            f"Reach out to {contact.name} (hot lead)",
        ),
        value=_lead_value(org),
        score=_lead_score(contact.lead_score),
    )


def churn_risk_rising(
    contact: ContactFacts, org: OrganizationFacts, config: RecommendationSettings
) -> Candidate | None:
    now, before = contact.churn_risk, contact.churn_risk_before
    if contact.lifecycle_stage not in CUSTOMER_STAGES or now is None or before is None:
        return None
    rise = now.score - before.score
    if rise < config.churn_rise_points or now.score < config.churn_min_risk:
        return None
    severity, overdue = beyond(rise, config.churn_rise_points)
    return _contact_candidate(
        contact,
        org,
        rule="churn_risk_rising",
        type="schedule_call",
        title=f"Call {contact.name}: churn risk up from {before.score:.0f} to {now.score:.0f}",
        facts={
            "churn_risk": round(now.score),
            "churn_risk_before": round(before.score),
            "rise_points": round(rise),
            "before_scored_at": before.scored_at,
            "lookback_days": config.churn_lookback_days,
        },
        trigger_key=f"churn_band={int(now.score // 10) * 10}",
        severity=severity,
        overdue=overdue,
        confidence=score_confidence(now),
        action={
            "kind": "task",
            "title": f"Call {contact.name}: check in on how things are going",
            "due_in_days": 1,
            "priority": "high",
        },
        value=_customer_value(contact, org),
        score=(now.score / 100.0, f"churn risk ({now.method})"),
    )


def re_engage_quiet(contact: ContactFacts, org: OrganizationFacts, config: RecommendationSettings) -> Candidate | None:
    if (
        contact.lifecycle_stage == "churned"
        or contact.activity_count < config.quiet_min_activities
        or contact.last_activity_at is None
        or contact.open_deals > 0
        or _is_hot(contact, config)
    ):
        return None
    days = days_between(org.now, contact.last_activity_at)
    if days < config.quiet_days:
        return None
    severity, overdue = beyond(days, config.quiet_days)
    customer = contact.lifecycle_stage in CUSTOMER_STAGES
    score = _lead_score(contact.lead_score) if contact.lead_score is not None else (0.5, "no score: even odds")
    return _contact_candidate(
        contact,
        org,
        rule="re_engage_quiet",
        type="re_engage",
        title=f"Re-engage {contact.name}: quiet for {days:.0f} days after {contact.activity_count} activities",
        facts={
            "days_since_last_touch": round(days),
            "last_touch_at": contact.last_activity_at,
            "past_activities": contact.activity_count,
            "threshold_days": config.quiet_days,
            "open_deals": 0,
        },
        trigger_key=f"last_touch={contact.last_activity_at.date().isoformat()}",
        severity=severity,
        overdue=overdue,
        confidence=FACT_CONFIDENCE if contact.lead_score is not None else PRIOR_CONFIDENCE + 0.2,
        action=_email_or_task(
            contact,
            "Checking in",
            f"Hello {contact.name},\n\nit has been a while since we last spoke; I wanted to check in.\n",
            f"Re-engage {contact.name}",
        ),
        value=_customer_value(contact, org) if customer else _lead_value(org),
        score=score,
    )


def contact_overdue_tasks(
    contact: ContactFacts, org: OrganizationFacts, config: RecommendationSettings
) -> Candidate | None:
    found = overdue_summary(contact.overdue_tasks, org.now)
    if found is None:
        return None
    facts, key, days = found
    severity, overdue = beyond(days + config.lead_stale_days, config.lead_stale_days)
    oldest = contact.overdue_tasks[0]
    customer = contact.lifecycle_stage in CUSTOMER_STAGES
    score = _lead_score(contact.lead_score) if contact.lead_score is not None else (0.5, "no score: even odds")
    return _contact_candidate(
        contact,
        org,
        rule="overdue_tasks",
        type="follow_up",
        title=f"{len(contact.overdue_tasks)} overdue task(s) for {contact.name}: '{oldest.title}'",
        facts=facts,
        trigger_key=f"tasks={key}",
        severity=severity,
        overdue=overdue,
        confidence=FACT_CONFIDENCE,
        action={"kind": "task_due", "task_id": str(oldest.task_id), "title": oldest.title, "due_in_days": 1},
        value=_customer_value(contact, org) if customer else _lead_value(org),
        score=score,
    )


ContactRule = Callable[[ContactFacts, OrganizationFacts, RecommendationSettings], Candidate | None]
CONTACT_RULES: tuple[ContactRule, ...] = (
    hot_lead_unattended,
    hot_lead_no_touch,
    churn_risk_rising,
    re_engage_quiet,
    contact_overdue_tasks,
)
