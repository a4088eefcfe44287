"""The demo's past: deals closed over the last year and customers kept or lost, enough of each for
the organization's own models to learn from (a model needs 200 labelled examples with 20 of each
outcome; fewer and the rules prior stands in, labelled as such).

The outcomes are drawn, not written down: each deal and each customer gets a hidden engagement
(or health) level, which drives both how often the team talks to them and how likely the deal is
won or the customer stays, with industry, company size and deal amount tilting the odds and plenty
of noise left. The models then have to find that in the activity history, the way they would in a
real CRM. Lost deals and churned customers go quiet before the end; some current customers are
going quiet now, so churn risk has someone to warn about.

Seeded, with its own random stream (the rest of the demo is unchanged by it), written through the
same services and bulk helpers as the rest of the demo (every record has its change event).
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from okyaku.conversation.rules import Competitor
from okyaku.conversation.store import replace_competitors
from okyaku.crm import schemas as s
from okyaku.crm.pipelines import DealService
from okyaku.crm.records import CONTACT_SPEC, RecordService
from okyaku.db.models import Activity, Company, Contact, Deal, DealStageHistory, Pipeline, PipelineStage, User
from okyaku.local.demo_rows import JOB_TITLES, backdate, bulk_create

# How an industry tilts the odds (log-odds): software and finance buy more readily, hospitality
# and retail less; the rest are neutral.
INDUSTRY_TILT = {
    "Software": 0.5,
    "Financial Services": 0.35,
    "Healthcare": 0.2,
    "Media": -0.25,
    "Retail": -0.4,
    "Hospitality": -0.5,
}
# The competitors the demo's notes mention, for the conversation rules floor to recognise.
DEMO_COMPETITORS = [
    Competitor("Salesforce", ("SFDC",)),
    Competitor("HubSpot"),
    Competitor("Pipedrive"),
    Competitor("Zoho", ("Zoho CRM",)),
]
PRODUCTS = ("Okyaku Cloud", "Analytics add-on", "Team licences", "Premium support", "Data migration")
SENIOR_TITLES = ("CEO", "CTO", "CFO", "VP Sales", "Marketing Director", "IT Director")


@dataclass
class HistorySummary:
    deals: int = 0
    won: int = 0
    lost: int = 0
    stage_changes: int = 0
    customers: int = 0
    churned: int = 0
    activities: int = 0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _count(rng: random.Random, mean: float) -> int:
    """A Poisson-like count (normal approximation, never negative)."""
    return max(0, round(rng.gauss(mean, math.sqrt(max(mean, 0.1)))))


def seed_history(
    session: Session,
    *,
    closed_deals: int,
    customers: int,
    seed: int,
    now: datetime,
    activity_text: Any,
    fake: Any,
) -> HistorySummary:
    """Add ``closed_deals`` deals closed over the last year and ``customers`` customer contacts (some
    churned), with the activities that led there. ``activity_text(rng, kind, contact, deal)`` writes
    an activity's subject and body (the demo's own)."""
    rng = random.Random(seed + 2)
    summary = HistorySummary()
    deals = DealService()
    contacts = RecordService(CONTACT_SPEC)
    replace_competitors(session, DEMO_COMPETITORS)
    companies = list(session.scalars(select(Company).order_by(Company.name)))
    people: dict[uuid.UUID, list[Contact]] = {}
    for contact in session.scalars(select(Contact).order_by(Contact.email)):
        if contact.company_id is not None:
            people.setdefault(contact.company_id, []).append(contact)
    with_people = [c for c in companies if c.id in people]
    owners = list(session.scalars(select(User.id).order_by(User.email)))
    pipeline = session.scalar(select(Pipeline).where(Pipeline.is_default))
    if pipeline is None or not with_people or not owners:
        return summary
    stages = list(session.scalars(select(PipelineStage).where(PipelineStage.pipeline_id == pipeline.id)))
    stages.sort(key=lambda stage: stage.position)
    open_stages = [stage for stage in stages if not (stage.is_won or stage.is_lost)]
    won_stage = next(stage for stage in stages if stage.is_won)
    lost_stage = next(stage for stage in stages if stage.is_lost)

    activities: list[s.ActivityCreate] = []
    deal_times: list[dict[str, Any]] = []
    history_times: list[dict[str, Any]] = []
    for _ in range(closed_deals):
        company = rng.choice(with_people)
        contact = rng.choice(people[company.id])
        amount = min(max(round(math.exp(rng.gauss(math.log(40_000), 0.8)) / 500) * 500, 3_000), 400_000)
        engagement = rng.gammavariate(2.0, 0.5)  # touches per fortnight, mean 1
        employees = company.employee_count or 50
        odds = (
            -0.1
            + 1.5 * (engagement - 1.0)
            + INDUSTRY_TILT.get(company.industry or "", 0.0)
            - 0.55 * math.log(amount / 40_000)
            + 0.15 * (math.log10(employees) - 2.0)
            + rng.gauss(0, 0.6)  # what no field records
        )
        won = rng.random() < _sigmoid(odds)
        life = timedelta(days=rng.uniform(25, 130))
        closed_at = now - timedelta(days=rng.uniform(12, 340), minutes=rng.randint(0, 600))
        created_at = closed_at - life
        if won:
            path = [*open_stages, won_stage]
        else:
            # A deal that engaged little is lost early.
            reached = 1 + min(len(open_stages) - 1, int(rng.random() * len(open_stages) * min(engagement, 1.2)))
            path = [*open_stages[:reached], lost_stage]
        record = deals.create(
            session,
            s.DealCreate(
                name=f"{company.name} - {rng.choice(PRODUCTS)}",
                pipeline_id=pipeline.id,
                stage_id=path[0].id,
                amount=Decimal(amount),
                currency="USD",
                expected_close_date=(created_at + life * rng.uniform(0.7, 1.2)).date(),
                owner_id=company.owner_id,
                company_id=company.id,
                contact_id=contact.id,
            ),
        )
        moments = [created_at, *sorted(created_at + life * rng.uniform(0.05, 0.95) for _ in path[2:]), closed_at]
        for stage, moment in zip(path[1:], moments[1:], strict=True):
            change: dict[str, Any] = {"stage_id": stage.id}
            if stage.is_won or stage.is_lost:
                change["closed_at"] = moment
            if stage.is_lost:
                change["lost_reason"] = rng.choice(
                    [
                        "Chose a competitor on price",
                        "Budget frozen for this fiscal year",
                        "No decision: project postponed",
                        "Went with an in-house solution",
                    ]
                )
            record = deals.update(session, record.id, s.DealUpdate(**change))
            summary.stage_changes += 1
        deal_times.append({"row_id": record.id, "created": created_at, "entered": closed_at, "updated": closed_at})
        history_ids = [h.id for h in deals.history(session, record.id)]
        history_times.extend(
            {"row_id": history_id, "changed": moment} for history_id, moment in zip(history_ids, moments, strict=True)
        )
        summary.deals += 1
        summary.won += won
        summary.lost += not won
        # Touches over the deal's life; a lost deal's thin out towards the end (it went quiet).
        for _touch in range(min(_count(rng, engagement * life.days / 21), 8)):
            share = rng.random() if won else rng.random() ** 1.8
            activities.append(
                _activity(rng, activity_text, contact, record, created_at + life * share, ("call", "meeting", "email"))
            )

    customer_rows: list[dict[str, Any]] = []
    for _ in range(customers):
        company = rng.choice(companies)
        health = rng.gauss(0.0, 1.0)  # how well the account is going; no field records it
        title = rng.choice(JOB_TITLES)
        employees = company.employee_count or 50
        odds = (
            -1.2
            - 1.3 * health
            + (0.45 if employees < 40 else 0.0)
            - (0.35 if title in SENIOR_TITLES else 0.0)
            - 0.5 * INDUSTRY_TILT.get(company.industry or "", 0.0)
        )
        churned = rng.random() < _sigmoid(odds)
        since = now - timedelta(days=rng.uniform(120, 420))
        created_at = since - timedelta(days=rng.uniform(20, 120))
        end = now - timedelta(days=rng.uniform(10, 150)) if churned else now
        end = max(end, since + timedelta(days=45))
        first, last = fake.first_name(), fake.last_name()
        record = contacts.create(
            session,
            s.ContactCreate(
                first_name=first,
                last_name=last,
                email=f"{first}.{last}{rng.randint(100, 999)}@{company.domain or 'example.com'}".lower(),
                phone=fake.numerify("+1-###-###-####") if rng.random() < 0.8 else None,
                job_title=title,
                company_id=company.id,
                lifecycle_stage="churned" if churned else "customer",
                lead_status="connected",
                source=rng.choice(["website", "referral", "event", "outbound", "partner"]),
                owner_id=company.owner_id or rng.choice(owners),
            ),
        )
        # The moment it became a customer, or churned: the churn model's cutoff reads updated_at.
        customer_rows.append({"row_id": record.id, "created": created_at, "updated": end if churned else since})
        summary.customers += 1
        summary.churned += churned
        # A monthly rhythm set by the account's health; the last two months before churning (and
        # for a customer in poor health, the last six weeks) are much quieter.
        rate = 0.35 * math.exp(0.5 * health)  # activities a month
        months = (end - created_at).days / 30
        quiet_from = end - timedelta(days=60 if churned else 45)
        for _touch in range(min(_count(rng, rate * months), 12)):
            moment = created_at + (end - created_at) * rng.random()
            if moment > quiet_from and (churned or health < -0.8) and rng.random() < 0.8:
                continue
            activities.append(_activity(rng, activity_text, record, None, moment, ("call", "meeting", "email", "note")))

    summary.activities = len(bulk_create(session, "activity", Activity, activities))
    backdate(
        session, Deal, deal_times, {"created_at": "created", "updated_at": "updated", "stage_entered_at": "entered"}
    )
    backdate(session, DealStageHistory, history_times, {"changed_at": "changed"})
    backdate(session, Contact, customer_rows, {"created_at": "created", "updated_at": "updated"})
    return summary


def _activity(
    rng: random.Random,
    activity_text: Any,
    contact: Contact,
    deal: Deal | None,
    moment: datetime,
    kinds: tuple[str, ...],
) -> s.ActivityCreate:
    kind = rng.choice(kinds)
    subject, body = activity_text(rng, kind, contact, deal)
    return s.ActivityCreate(
        type=kind,
        subject=subject,
        body=body,
        occurred_at=moment,
        duration_minutes=rng.choice([15, 30, 45, 60]) if kind in ("call", "meeting") else None,
        direction=rng.choice(["inbound", "outbound"]) if kind in ("call", "email") else None,
        owner_id=contact.owner_id,
        contact_id=contact.id,
        company_id=contact.company_id,
        deal_id=deal.id if deal is not None else None,
    )
