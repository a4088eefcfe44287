"""A seeded generator of lead histories with a known signal, for tests and benchmarks.

The truth is a logistic model: meetings and a senior contact raise the chance to convert, the
software industry raises it, a long silence lowers it; the ``noise_*`` columns carry nothing."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from okyaku.predictions.tabular import Dataset, FeatureSpec, FloatArray

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

INDUSTRIES = ("software", "logistics", "retail", "manufacturing", "healthcare")
TRUE_SIGNAL = ("meetings_30d", "industry", "days_since_last_activity", "seniority")
NOISE = ("noise_a", "noise_b", "noise_c")


@dataclass(frozen=True)
class SyntheticLeads:
    dataset: Dataset
    true_probability: FloatArray


def true_logit(
    meetings: FloatArray, software: FloatArray, days_silent: FloatArray, seniority: FloatArray
) -> FloatArray:
    return np.asarray(-2.0 + 0.8 * meetings + 0.9 * software - 0.03 * days_silent + 0.35 * (seniority - 2), dtype=float)


def generate_leads(n: int, seed: int = 0, *, leak: bool = False) -> SyntheticLeads:
    """``leak=True`` adds ``became_customer_flag``: the outcome itself, recorded afterwards."""
    rng = np.random.default_rng(seed)
    meetings = rng.poisson(0.8, n).astype(float)
    emails = rng.poisson(3.0, n).astype(float)
    industry = rng.choice(INDUSTRIES, n)
    days_silent = np.minimum(rng.exponential(25.0, n), 180.0).round()
    seniority = rng.integers(1, 6, n).astype(float)
    employees = np.exp(rng.normal(5.0, 1.5, n)).round()
    logit = true_logit(meetings, (industry == "software").astype(float), days_silent, seniority)
    probability = 1.0 / (1.0 + np.exp(-logit))
    labels = (rng.random(n) < probability).astype(np.int64)
    specs = [
        FeatureSpec("meetings_30d", "numeric", "engagement", "meetings in the last 30 days"),
        FeatureSpec("emails_90d", "numeric", "engagement", "emails in the last 90 days"),
        FeatureSpec("industry", "categorical", "fit", "industry"),
        FeatureSpec("seniority", "numeric", "fit", "seniority (1 staff - 5 executive)"),
        FeatureSpec("company_employees", "numeric", "fit", "company employees", log_scale=True),
        FeatureSpec("days_since_last_activity", "numeric", "timing", "days since the last activity"),
    ]
    columns: dict[str, list[object]] = {
        "meetings_30d": meetings.tolist(),
        "emails_90d": emails.tolist(),
        "industry": industry.tolist(),
        "seniority": seniority.tolist(),
        "company_employees": employees.tolist(),
        "days_since_last_activity": days_silent.tolist(),
    }
    for name in NOISE:
        specs.append(FeatureSpec(name, "numeric", "fit"))
        columns[name] = rng.normal(0, 1, n).tolist()
    if leak:
        specs.append(FeatureSpec("became_customer_flag", "boolean", "fit"))
        columns["became_customer_flag"] = [bool(v) for v in labels]
    dataset = Dataset(specs=specs, columns=dict(columns), ids=[f"lead-{i}" for i in range(n)], labels=labels)
    return SyntheticLeads(dataset=dataset, true_probability=probability)


# --- CRM histories, written through the public CRM services -------------------------------------

TITLES = {1: "Analyst", 2: "Sales Manager", 3: "Director of Operations", 4: "VP Finance", 5: "Chief Executive Officer"}


@dataclass(frozen=True)
class CrmHistory:
    contacts: list[uuid.UUID]  # labelled: converted (customer) or disqualified
    open_leads: list[uuid.UUID]
    labels: dict[uuid.UUID, int]
    companies: dict[str, uuid.UUID]


def crm_lead_logit(meetings_30d: int, software: bool, seniority: int) -> float:
    return -2.2 + 1.0 * meetings_30d + 1.2 * float(software) + 0.4 * (seniority - 2)


def create_crm_history(
    session: Session,
    *,
    labelled: int,
    open_leads: int = 0,
    seed: int = 0,
    now: datetime | None = None,
    leak_property: bool = False,
) -> CrmHistory:
    """Companies, contacts and their activities, then each labelled contact's outcome (customer, or
    lead_status unqualified) drawn from ``crm_lead_logit``: meetings in the last 30 days, the
    software industry and seniority raise the chance; e-mails and older meetings are noise.
    ``leak_property`` also records ``signed_contract`` with the outcome: derived from it, a leak."""
    from okyaku.crm import schemas
    from okyaku.crm.records import ACTIVITY_SPEC, COMPANY_SPEC, CONTACT_SPEC, ActivityService, RecordService

    now = now or datetime.now(UTC)
    rng = np.random.default_rng(seed)
    companies_service, contacts_service = RecordService(COMPANY_SPEC), RecordService(CONTACT_SPEC)
    activities_service = ActivityService(ACTIVITY_SPEC)
    companies = {
        industry: companies_service.create(
            session, schemas.CompanyCreate(name=f"{industry.title()} Co {seed}", industry=industry, employee_count=200)
        ).id
        for industry in INDUSTRIES
    }
    history = CrmHistory(contacts=[], open_leads=[], labels={}, companies=companies)
    for index in range(labelled + open_leads):
        industry = str(rng.choice(INDUSTRIES))
        level = int(rng.integers(1, 6))
        contact = contacts_service.create(
            session,
            schemas.ContactCreate(
                first_name=f"Person{index}",
                last_name=f"Seed{seed}",
                email=f"p{index}.s{seed}@{industry}.example",
                job_title=TITLES[level],
                company_id=companies[industry],
                source=str(rng.choice(["web", "referral", "event"])),
            ),
        )
        meetings = int(rng.poisson(0.8))
        for _ in range(meetings):
            when = now - timedelta(days=float(rng.uniform(1, 28)))
            activities_service.create(
                session, schemas.ActivityCreate(type="meeting", contact_id=contact.id, occurred_at=when)
            )
        for _ in range(int(rng.poisson(0.4))):  # older meetings: no signal
            when = now - timedelta(days=float(rng.uniform(35, 85)))
            activities_service.create(
                session, schemas.ActivityCreate(type="meeting", contact_id=contact.id, occurred_at=when)
            )
        for _ in range(int(rng.poisson(1.0))):
            when = now - timedelta(days=float(rng.uniform(1, 80)))
            activities_service.create(
                session,
                schemas.ActivityCreate(type="email", contact_id=contact.id, occurred_at=when, direction="outbound"),
            )
        if index >= labelled:
            history.open_leads.append(contact.id)
            continue
        probability = 1.0 / (1.0 + math.exp(-crm_lead_logit(meetings, industry == "software", level)))
        converted = int(rng.random() < probability)
        leak = {"signed_contract": bool(converted)} if leak_property else None
        change = (
            schemas.ContactUpdate(lifecycle_stage="customer", custom_properties=leak)
            if converted
            else schemas.ContactUpdate(lead_status="unqualified", custom_properties=leak)
        )
        contacts_service.update(session, contact.id, change)
        history.contacts.append(contact.id)
        history.labels[contact.id] = converted
    return history
