"""The text that describes each record: the fields a person would search by, never ids.

A document's ``content_hash`` decides whether it must be embedded again, so the text is
deterministic: same record, same related names → same text.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from okyaku.db.models import Activity, Company, Contact, Deal, Pipeline, PipelineStage

MAX_CONTENT_CHARS = 4000  # beyond any embedding model's window; keeps rows and snippets small
MAX_CUSTOM_PROPERTIES = 20


@dataclass(frozen=True)
class EntityDocument:
    entity_type: str
    entity_id: uuid.UUID
    version: int
    title: str
    content: str

    @property
    def content_hash(self) -> str:
        return content_hash(self.content)


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


def _line(label: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    return f"{label}: {_format(value)}"


def _format(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return " ".join(str(value).split())


def _join(lines: Iterable[str | None]) -> str:
    return "\n".join(line for line in lines if line)[:MAX_CONTENT_CHARS]


def _custom_lines(properties: Mapping[str, Any] | None) -> list[str | None]:
    lines: list[str | None] = []
    for key in sorted(properties or {})[:MAX_CUSTOM_PROPERTIES]:
        value = (properties or {})[key]
        if isinstance(value, str | int | float | bool) and value != "":
            lines.append(_line(key.replace("_", " ").capitalize(), value))
    return lines


def person_name(first: str | None, last: str | None, email: str | None = None) -> str:
    name = " ".join(part for part in (first, last) if part)
    return name or email or "(no name)"


def company_document(company: Company) -> EntityDocument:
    location = ", ".join(part for part in (company.city, company.country) if part)
    size = []
    if company.employee_count is not None:
        size.append(f"{company.employee_count:,} employees")
    if company.annual_revenue is not None:
        size.append(f"annual revenue {_format(company.annual_revenue)}")
    content = _join(
        [
            _line("Company", company.name),
            _line("Industry", company.industry),
            _line("Location", location),
            _line("Website", company.domain),
            _line("Size", "; ".join(size)),
            _line("About", company.description),
            *_custom_lines(company.custom_properties),
        ]
    )
    return EntityDocument("company", company.id, company.version, company.name, content)


def contact_document(contact: Contact, company_name: str | None) -> EntityDocument:
    name = person_name(contact.first_name, contact.last_name, contact.email)
    role = " at ".join(part for part in (contact.job_title, company_name) if part)
    stage = contact.lifecycle_stage + (f", lead status {contact.lead_status}" if contact.lead_status else "")
    content = _join(
        [
            _line("Contact", name),
            _line("Role", role),
            _line("Email", contact.email),
            _line("Lifecycle stage", stage.replace("_", " ")),
            _line("Source", contact.source),
            *_custom_lines(contact.custom_properties),
        ]
    )
    return EntityDocument("contact", contact.id, contact.version, name, content)


def deal_document(
    deal: Deal,
    *,
    company_name: str | None,
    contact_name: str | None,
    stage_name: str | None,
    pipeline_name: str | None,
    status: str,
) -> EntityDocument:
    stage = None
    if stage_name:
        stage = f"{stage_name}" + (f" in the {pipeline_name} pipeline" if pipeline_name else "") + f" ({status})"
    amount = f"{_format(deal.amount)} {deal.currency}" if deal.amount is not None else None
    content = _join(
        [
            _line("Deal", deal.name),
            _line("Company", company_name),
            _line("Contact", contact_name),
            _line("Stage", stage),
            _line("Amount", amount),
            _line("Expected close", deal.expected_close_date),
            _line("Lost reason", deal.lost_reason),
            *_custom_lines(deal.custom_properties),
        ]
    )
    return EntityDocument("deal", deal.id, deal.version, deal.name, content)


def activity_title(activity_type: str, subject: str | None, occurred_at: datetime | None) -> str:
    if subject:
        return subject
    when = f" on {occurred_at.date().isoformat()}" if occurred_at else ""
    return f"{activity_type.capitalize()}{when}"


def activity_document(
    activity: Activity, *, contact_name: str | None, company_name: str | None, deal_name: str | None
) -> EntityDocument:
    kind = activity.type.capitalize() + (f" ({activity.direction})" if activity.direction else "")
    with_whom = " at ".join(part for part in (contact_name, company_name) if part)
    content = _join(
        [
            _line(kind, activity.subject or "(no subject)"),
            _line("Date", activity.occurred_at),
            _line("With", with_whom),
            _line("Deal", deal_name),
            activity.body.strip() if activity.body else None,
            *_custom_lines(activity.custom_properties),
        ]
    )
    title = activity_title(activity.type, activity.subject, activity.occurred_at)
    return EntityDocument("activity", activity.id, activity.version, title, content)


# --- loading -------------------------------------------------------------------------------


def load_documents(session: Session, entity_type: str, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, EntityDocument]:
    """The current document of each record that exists (and is visible to this organization)."""
    if not ids:
        return {}
    statement = _document_query(entity_type)
    model = _MODELS[entity_type]
    rows = session.execute(statement.where(model.id.in_(list(ids)))).all()
    return {doc.entity_id: doc for doc in (_to_document(entity_type, row) for row in rows)}


def document_page(session: Session, entity_type: str, *, after: uuid.UUID | None, limit: int) -> list[EntityDocument]:
    """Documents in id order after ``after``: the backfill's resumable walk."""
    model = _MODELS[entity_type]
    statement = _document_query(entity_type).order_by(model.id).limit(limit)
    if after is not None:
        statement = statement.where(model.id > after)
    return [_to_document(entity_type, row) for row in session.execute(statement).all()]


def count_records(session: Session, entity_type: str) -> int:
    model = _MODELS[entity_type]
    return int(session.execute(select(func.count()).select_from(model)).scalar_one())


_MODELS: dict[str, Any] = {"company": Company, "contact": Contact, "deal": Deal, "activity": Activity}

_company = aliased(Company)
_contact = aliased(Contact)
_deal = aliased(Deal)
_stage = aliased(PipelineStage)
_pipeline = aliased(Pipeline)


def _document_query(entity_type: str) -> Any:  # a Select of the model and its related names
    if entity_type == "company":
        return select(Company)
    if entity_type == "contact":
        return select(Contact, _company.name).outerjoin(_company, _company.id == Contact.company_id)
    if entity_type == "deal":
        return (
            select(
                Deal,
                _company.name,
                _contact.first_name,
                _contact.last_name,
                _contact.email,
                _stage.name,
                _stage.is_won,
                _stage.is_lost,
                _pipeline.name,
            )
            .outerjoin(_company, _company.id == Deal.company_id)
            .outerjoin(_contact, _contact.id == Deal.contact_id)
            .outerjoin(_stage, _stage.id == Deal.stage_id)
            .outerjoin(_pipeline, _pipeline.id == Deal.pipeline_id)
        )
    if entity_type == "activity":
        return (
            select(Activity, _contact.first_name, _contact.last_name, _contact.email, _company.name, _deal.name)
            .outerjoin(_contact, _contact.id == Activity.contact_id)
            .outerjoin(_company, _company.id == Activity.company_id)
            .outerjoin(_deal, _deal.id == Activity.deal_id)
        )
    raise ValueError(f"not an embeddable entity type: {entity_type}")


def _to_document(entity_type: str, row: Any) -> EntityDocument:
    if entity_type == "company":
        return company_document(row[0])
    if entity_type == "contact":
        return contact_document(row[0], row[1])
    if entity_type == "deal":
        deal, company, first, last, email, stage, won, lost, pipeline = row
        contact = person_name(first, last, email) if (first or last or email) else None
        status = "won" if won else "lost" if lost else "open"
        return deal_document(
            deal, company_name=company, contact_name=contact, stage_name=stage, pipeline_name=pipeline, status=status
        )
    activity, first, last, email, company, deal_name = row
    contact = person_name(first, last, email) if (first or last or email) else None
    return activity_document(activity, contact_name=contact, company_name=company, deal_name=deal_name)


# Which records embed another record's fields: a change to those fields makes their text stale.
# (changed entity type, fields) -> [(dependent type, foreign key column)]
DEPENDENTS: dict[str, tuple[frozenset[str], list[tuple[str, Any]]]] = {
    "company": (
        frozenset({"name"}),
        [("contact", Contact.company_id), ("deal", Deal.company_id), ("activity", Activity.company_id)],
    ),
    "contact": (
        frozenset({"first_name", "last_name", "email"}),
        [("deal", Deal.contact_id), ("activity", Activity.contact_id)],
    ),
    "deal": (frozenset({"name"}), [("activity", Activity.deal_id)]),
}


def dependent_ids(
    session: Session, entity_type: str, entity_id: uuid.UUID, changed_fields: Sequence[str], *, limit: int
) -> list[tuple[str, uuid.UUID]]:
    """Records whose text includes fields of ``entity_id`` that changed (bounded; backfill does the rest)."""
    watched, dependents = DEPENDENTS.get(entity_type, (frozenset(), []))
    if not watched.intersection(changed_fields):
        return []
    found: list[tuple[str, uuid.UUID]] = []
    for dependent_type, column in dependents:
        model = _MODELS[dependent_type]
        ids = session.scalars(select(model.id).where(column == entity_id).limit(limit)).all()
        found.extend((dependent_type, i) for i in ids)
    return found
