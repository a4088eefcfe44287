"""Realistic demo data for a demo organization, made through the public CRM services.

Deterministic (seeded Faker and random), a few seconds to create. Companies, contacts, the
pipeline and the deals (with their stage changes) are written by their services; activities and
tasks, the bulk of the rows, are validated by the API's input schemas and inserted in one batch
per kind. Every record has its change event in the outbox like any API write. Timestamps that no
API lets a client set (created_at, stage history dates) are then moved into the past, so that
the demo has a year of history rather than a burst of records made "just now".
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from okyaku.crm import schemas as s
from okyaku.crm.pipelines import DealService, PipelineService
from okyaku.crm.records import COMPANY_SPEC, CONTACT_SPEC, RecordService
from okyaku.db.models import Activity, Company, Contact, Deal, DealStageHistory, Task, User
from okyaku.local.demo_anomalies import plant_anomalies
from okyaku.local.demo_history import seed_history
from okyaku.local.demo_rows import JOB_TITLES, backdate, bulk_create
from okyaku.runtime import Runtime

DEMO_ORGANIZATION_NAME = "Okyaku Demo"
DEMO_ADMIN_EMAIL = "admin@okyaku-demo.example"

INDUSTRIES = [
    "Software",
    "Manufacturing",
    "Healthcare",
    "Financial Services",
    "Retail",
    "Logistics",
    "Education",
    "Energy",
    "Media",
    "Hospitality",
]
SOURCES = ["website", "referral", "event", "outbound", "partner", "linkedin", "webinar"]
LIFECYCLE_WEIGHTS = {
    "subscriber": 6,
    "lead": 30,
    "mql": 18,
    "sql": 14,
    "opportunity": 12,
    "customer": 15,
    "evangelist": 2,
    "churned": 3,
}
LEAD_STATUSES = ["new", "open", "in_progress", "attempted", "connected", "qualified", "unqualified"]
STAGES = [
    ("Qualification", 0.1, False, False),
    ("Discovery", 0.2, False, False),
    ("Proposal", 0.4, False, False),
    ("Negotiation", 0.7, False, False),
    ("Closed Won", 1.0, True, False),
    ("Closed Lost", 0.0, False, True),
]
PRODUCTS = ["Okyaku Cloud", "Analytics add-on", "Premium support", "Data migration", "Team licences"]
LOST_REASONS = [
    "Chose a competitor on price",
    "Budget frozen for this fiscal year",
    "No decision: project postponed",
    "Missing integration with their ERP",
    "Champion left the company",
    "Went with an in-house solution",
]
COMPETITORS = ["Salesforce", "HubSpot", "Pipedrive", "Zoho", "an in-house tool"]
TOPICS = [
    "pricing for the annual plan",
    "the data migration timeline",
    "SSO and security review",
    "integration with their ERP",
    "onboarding for the sales team",
    "reporting requirements",
    "renewal terms",
    "the pilot results",
]
NEXT_STEPS = [
    "send a revised quote",
    "schedule a technical deep-dive",
    "share two customer references",
    "set up a pilot workspace",
    "loop in their procurement team",
    "book a follow-up call next week",
]
SENTIMENTS = [
    "They sounded positive and asked good questions.",
    "Some hesitation about cost; they want to compare options.",
    "Strong interest, but timing depends on their Q3 budget.",
    "They are happy with the product so far.",
    "Concerned about the effort to switch from their current tool.",
]
TASK_TITLES = [
    "Follow up with {name} about {topic}",
    "Send proposal to {company}",
    "Prepare demo for {company}",
    "Check in with {name} after the pilot",
    "Update the forecast for {company}",
    "Book quarterly review with {name}",
]


@dataclass(frozen=True)
class DemoSize:
    companies: int = 200
    contacts: int = 350
    deals: int = 150
    activities: int = 1000
    tasks: int = 120
    # The past the models learn from (okyaku.local.demo_history): deals closed over the last year
    # and customer contacts kept or lost, with the activities that led there.
    closed_deals: int = 140
    customers: int = 160

    def scaled(self, factor: float) -> DemoSize:
        """Proportionally more or fewer records (at least one of each)."""
        return DemoSize(
            *(max(1, round(getattr(self, name) * factor)) for name in self.__dataclass_fields__),
        )


@dataclass
class DemoSummary:
    companies: int = 0
    contacts: int = 0
    pipelines: int = 0
    deals: int = 0
    deals_won: int = 0
    deals_lost: int = 0
    stage_changes: int = 0
    activities: int = 0
    tasks: int = 0
    users: int = 0
    seconds: float = 0.0
    churned: int = 0  # customers lost (the churn model's positives)
    # what plant_anomalies put in for the anomaly scan to find: detector type -> record ids
    planted: dict[str, list[str]] = field(default_factory=dict)


Progress = Callable[[str], None]


def _weighted(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _ago(now: datetime, rng: random.Random, min_days: float, max_days: float) -> datetime:
    return now - timedelta(days=rng.uniform(min_days, max_days), minutes=rng.randint(0, 600))


def seed_demo_data(
    runtime: Runtime,
    organization_id: uuid.UUID,
    admin_user_id: uuid.UUID | None = None,
    *,
    size: DemoSize | None = None,
    seed: int = 7,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> DemoSummary:
    """Fill ``organization_id`` with demo records; deterministic for a given seed."""
    from faker import Faker  # only the demo needs it

    size = size or DemoSize()
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    fake = Faker("en_US")
    fake.seed_instance(seed)
    say = progress or (lambda _message: None)
    summary = DemoSummary()
    started = time.perf_counter()

    companies = RecordService(COMPANY_SPEC)
    contacts = RecordService(CONTACT_SPEC)
    pipelines = PipelineService()
    deals = DealService()

    with runtime.transaction(organization_id, publish_inline_limit=None) as session:  # a seed: consumers get it all now
        team = _create_sales_team(session, fake, admin_user_id)
        owners = [user.id for user in team]
        summary.users = len(team)

        say(f"{size.companies} companies")
        company_rows: list[tuple[Any, datetime]] = []
        for _ in range(size.companies):
            name = fake.unique.company()
            domain = "".join(ch for ch in name.lower() if ch.isalnum())[:24] + rng.choice([".com", ".io", ".net"])
            employees = int(rng.lognormvariate(4, 1.3)) + 2
            record = companies.create(
                session,
                s.CompanyCreate(
                    name=name,
                    domain=domain,
                    industry=rng.choice(INDUSTRIES),
                    employee_count=employees,
                    annual_revenue=Decimal(employees * rng.randint(80, 260) * 1000),
                    country=rng.choice(["United States", "Germany", "United Kingdom", "France", "Japan", "Canada"]),
                    city=fake.city(),
                    description=fake.catch_phrase(),
                    owner_id=rng.choice(owners),
                ),
            )
            company_rows.append((record, _ago(now, rng, 200, 400)))
        summary.companies = len(company_rows)

        say(f"{size.contacts} contacts")
        contact_rows: list[tuple[Any, datetime]] = []
        by_company: dict[uuid.UUID, list[Any]] = {}
        for _ in range(size.contacts):
            company: Any = None
            company_created: datetime | None = None
            if rng.random() < 0.88:
                company, company_created = rng.choice(company_rows)
            first, last = fake.first_name(), fake.last_name()
            domain = company.domain if company is not None else fake.free_email_domain()
            record = contacts.create(
                session,
                s.ContactCreate(
                    first_name=first,
                    last_name=last,
                    email=f"{first}.{last}{rng.randint(1, 99)}@{domain}".lower(),
                    phone=fake.numerify("+1-###-###-####"),
                    job_title=rng.choice(JOB_TITLES),
                    company_id=company.id if company is not None else None,
                    lifecycle_stage=_weighted(rng, LIFECYCLE_WEIGHTS),
                    lead_status=rng.choice(LEAD_STATUSES),
                    source=rng.choice(SOURCES),
                    owner_id=company.owner_id if company is not None else rng.choice(owners),
                ),
            )
            earliest = (now - company_created).days if company_created else 380
            contact_rows.append((record, _ago(now, rng, 5, max(earliest, 6))))
            if company is not None:
                by_company.setdefault(company.id, []).append(record)
        summary.contacts = len(contact_rows)

        say("a sales pipeline")
        pipeline = pipelines.create(
            session,
            s.PipelineCreate(
                name="Sales",
                is_default=True,
                stages=[s.StageIn(name=name, probability=p, is_won=won, is_lost=lost) for name, p, won, lost in STAGES],
            ),
        )
        summary.pipelines = 1
        stages = list(pipeline.stages)
        open_stages = [stage for stage in stages if not (stage.is_won or stage.is_lost)]
        won_stage = next(stage for stage in stages if stage.is_won)
        lost_stage = next(stage for stage in stages if stage.is_lost)

        say(f"{size.deals} deals with their stage history")
        deal_times: list[dict[str, Any]] = []
        history_times: list[dict[str, Any]] = []
        deal_rows: list[Any] = []
        companies_with_people = [c for c, _ in company_rows if by_company.get(c.id)]
        for _ in range(size.deals):
            company = rng.choice(companies_with_people)
            contact = rng.choice(by_company[company.id])
            outcome = rng.choices(["open", "won", "lost"], weights=[45, 30, 25])[0]
            if outcome == "open":
                path = open_stages[: rng.randint(1, len(open_stages))]
            elif outcome == "won":
                path = [*open_stages, won_stage]
            else:
                path = [*open_stages[: rng.randint(1, len(open_stages))], lost_stage]
            created_at = _ago(now, rng, 20 + 12 * len(path), 330)
            record = deals.create(
                session,
                s.DealCreate(
                    name=f"{company.name} - {rng.choice(PRODUCTS)}",
                    pipeline_id=pipeline.id,
                    stage_id=path[0].id,
                    amount=Decimal(rng.randrange(5_000, 250_000, 500)),
                    currency="USD",
                    expected_close_date=(created_at + timedelta(days=rng.randint(30, 150))).date(),
                    owner_id=company.owner_id,
                    company_id=company.id,
                    contact_id=contact.id,
                ),
            )
            moments = _spread(rng, created_at, now - timedelta(days=1), len(path))
            for stage, moment in zip(path[1:], moments[1:], strict=True):
                change: dict[str, Any] = {"stage_id": stage.id}
                if stage.is_won or stage.is_lost:
                    change["closed_at"] = moment
                if stage.is_lost:
                    change["lost_reason"] = rng.choice(LOST_REASONS)
                record = deals.update(session, record.id, s.DealUpdate(**change))
                summary.stage_changes += 1
            summary.deals_won += outcome == "won"
            summary.deals_lost += outcome == "lost"
            deal_rows.append(record)
            deal_times.append(
                {"row_id": record.id, "created": created_at, "entered": moments[-1], "updated": moments[-1]}
            )
            history_ids = [h.id for h in deals.history(session, record.id)]
            history_times.extend(
                {"row_id": history_id, "changed": moment}
                for history_id, moment in zip(history_ids, moments, strict=True)
            )
        summary.deals = len(deal_rows)

        say(f"{size.activities} activities")
        people = [c for c, _ in contact_rows]
        deals_by_contact: dict[uuid.UUID, list[Any]] = {}
        for deal in deal_rows:
            deals_by_contact.setdefault(deal.contact_id, []).append(deal)
        activity_inputs = []
        for _ in range(size.activities):
            contact = rng.choice(people)
            deal = rng.choice(deals_by_contact[contact.id]) if contact.id in deals_by_contact else None
            kind = rng.choices(["call", "meeting", "email", "note"], weights=[30, 20, 35, 15])[0]
            subject, body = _activity_text(rng, kind, contact, deal)
            activity_inputs.append(
                s.ActivityCreate(
                    type=kind,
                    subject=subject,
                    body=body,
                    occurred_at=_ago(now, rng, 0, 180),
                    duration_minutes=rng.choice([15, 30, 45, 60]) if kind in ("call", "meeting") else None,
                    direction=rng.choice(["inbound", "outbound"]) if kind in ("call", "email") else None,
                    owner_id=contact.owner_id,
                    contact_id=contact.id,
                    company_id=contact.company_id,
                    deal_id=deal.id if deal is not None else None,
                )
            )
        summary.activities = len(bulk_create(session, "activity", Activity, activity_inputs))

        say(f"{size.tasks} tasks")
        company_names = {c.id: c.name for c, _ in company_rows}
        task_inputs = []
        for _ in range(size.tasks):
            contact = rng.choice(people)
            deal = rng.choice(deals_by_contact[contact.id]) if contact.id in deals_by_contact else None
            due = now + timedelta(days=rng.randint(-20, 30), hours=rng.randint(8, 17))
            status = "done" if due < now and rng.random() < 0.6 else rng.choice(["open", "open", "in_progress"])
            task_inputs.append(
                s.TaskCreate(
                    title=rng.choice(TASK_TITLES).format(
                        name=f"{contact.first_name} {contact.last_name}",
                        company=company_names.get(contact.company_id, "their team"),
                        topic=rng.choice(TOPICS),
                    ),
                    description=f"Next step agreed on the last call: {rng.choice(NEXT_STEPS)}.",
                    due_date=due,
                    status=status,
                    priority=rng.choice(["low", "normal", "normal", "high"]),
                    assignee_id=contact.owner_id,
                    contact_id=contact.id,
                    company_id=contact.company_id,
                    deal_id=deal.id if deal is not None else None,
                )
            )
        # TaskService stamps completed_at on done tasks; here it is the due date, not "now".
        summary.tasks = len(
            bulk_create(
                session,
                "task",
                Task,
                task_inputs,
                lambda values: {**values, "completed_at": values["due_date"] if values["status"] == "done" else None},
            )
        )

        # In this transaction: consumers busy with the present's events would slow it down threefold.
        say(f"{size.closed_deals} deals closed over the last year, {size.customers} customers kept or lost")
        history_fake = Faker("en_US")
        history_fake.seed_instance(seed + 2)
        history = seed_history(
            session,
            closed_deals=size.closed_deals,
            customers=size.customers,
            seed=seed,
            now=now,
            activity_text=_activity_text,
            fake=history_fake,
        )
        summary.deals += history.deals
        summary.deals_won += history.won
        summary.deals_lost += history.lost
        summary.stage_changes += history.stage_changes
        summary.contacts += history.customers
        summary.churned = history.churned
        summary.activities += history.activities

        say("a year of history")
        created = {"created_at": "created", "updated_at": "updated"}
        backdate(session, Company, [{"row_id": r.id, "created": t, "updated": t} for r, t in company_rows], created)
        backdate(session, Contact, [{"row_id": r.id, "created": t, "updated": t} for r, t in contact_rows], created)
        backdate(session, Deal, deal_times, {**created, "stage_entered_at": "entered"})
        backdate(session, DealStageHistory, history_times, {"changed_at": "changed"})
    summary.planted = plant_anomalies(runtime, organization_id, seed=seed, now=now)
    summary.stage_changes += len(summary.planted.get("stage_regression", []))
    summary.seconds = time.perf_counter() - started
    return summary


def _create_sales_team(session: Session, fake: Any, admin_user_id: uuid.UUID | None) -> list[User]:
    """A few account owners, so that filtering by owner means something.

    The caller keeps the returned objects: the session's identity map holds them only weakly,
    and reference checks then find them there instead of querying for every record.
    """
    team = []
    for _ in range(3):
        name = fake.name()
        team.append(User(email=f"{name.split()[0].lower()}@okyaku-demo.example", name=name, role="member"))
    session.add_all(team)
    session.flush()
    admin = session.get(User, admin_user_id) if admin_user_id else None
    return [admin, *team] if admin is not None else team


def _spread(rng: random.Random, start: datetime, end: datetime, count: int) -> list[datetime]:
    """``count`` increasing moments from ``start`` (included) to before ``end``."""
    if count == 1:
        return [start]
    span = (end - start).total_seconds()
    offsets = sorted(rng.uniform(0.05, 0.95) * span for _ in range(count - 1))
    return [start, *(start + timedelta(seconds=o) for o in offsets)]


def _activity_text(rng: random.Random, kind: str, contact: Any, deal: Any | None) -> tuple[str, str]:
    name = contact.first_name
    topic = rng.choice(TOPICS)
    next_step = rng.choice(NEXT_STEPS)
    about = f" ({deal.name})" if deal is not None else ""
    if kind == "call":
        return (
            f"Call with {name} about {topic}",
            f"Spoke with {name} {contact.last_name} about {topic}{about}. {rng.choice(SENTIMENTS)} "
            f"They are also looking at {rng.choice(COMPETITORS)}. Next step: {next_step}.",
        )
    if kind == "meeting":
        return (
            f"Meeting: {topic}",
            f"Met {name} and two colleagues to go through {topic}{about}. {rng.choice(SENTIMENTS)} "
            f"Open questions: {rng.choice(TOPICS)}. Agreed to {next_step}.",
        )
    if kind == "email":
        return (
            f"Re: {topic.capitalize()}",
            f"Hi {name},\n\nThanks for your time today. As discussed, here is a summary of {topic}{about}. "
            f"We will {next_step} and get back to you by {rng.choice(['Monday', 'Wednesday', 'Friday'])}."
            "\n\nBest regards",
        )
    return (
        f"Note on {name} {contact.last_name}",
        f"{rng.choice(SENTIMENTS)} Main interest: {topic}. Decision maker: {rng.choice(JOB_TITLES)}. "
        f"Remember to {next_step}.",
    )
