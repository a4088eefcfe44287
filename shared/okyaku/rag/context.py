"""The RAG context builder: a question (and optionally a record in focus) → the records that
matter and their related facts, formatted for a prompt within a token budget, with citations.

Every record or related record the text mentions carries a marker ``[n]``; ``citations`` maps
each marker to its entity type and id, so an answer that cites ``[2]`` can link to the record.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from okyaku.db.models import Activity, Company, Contact, Deal, PipelineStage
from okyaku.embeddings.documents import activity_title, person_name
from okyaku.embeddings.models import EMBEDDABLE_TYPES
from okyaku.embeddings.search import SearchMode, SemanticSearch
from okyaku.errors import NotFound, ValidationFailed, field_error

CHARS_PER_TOKEN = 4  # English text in BPE tokenizers: close enough to budget with, and cheap


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class EntityRef:
    entity_type: str
    entity_id: uuid.UUID


@dataclass(frozen=True)
class Citation:
    ref: int
    entity_type: str
    entity_id: uuid.UUID
    title: str

    @property
    def marker(self) -> str:
        return f"[{self.ref}]"


@dataclass
class RagContext:
    question: str
    text: str
    citations: list[Citation]
    records: list[EntityRef]  # the records chosen for the question (focus first), in order
    token_estimate: int
    token_budget: int
    truncated: bool = False  # records or facts were left out to stay within the budget
    degraded: bool = False  # semantic search ran on keywords only

    def citation(self, ref: int) -> Citation:
        for citation in self.citations:
            if citation.ref == ref:
                return citation
        raise KeyError(ref)


# A line is text with entity mentions in it; mentions become [n] markers when rendered.
Part = str | tuple[EntityRef, str]


@dataclass
class _Block:
    record: EntityRef
    header: list[Part]
    facts: list[list[Part]] = field(default_factory=list)


class _Citations:
    def __init__(self) -> None:
        self.by_ref: dict[EntityRef, Citation] = {}

    def copy(self) -> _Citations:
        clone = _Citations()
        clone.by_ref = dict(self.by_ref)
        return clone

    def marker(self, ref: EntityRef, title: str) -> str:
        citation = self.by_ref.get(ref)
        if citation is None:
            citation = Citation(len(self.by_ref) + 1, ref.entity_type, ref.entity_id, title)
            self.by_ref[ref] = citation
        return citation.marker


def _render_line(parts: Sequence[Part], citations: _Citations) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
        else:
            ref, title = part
            out.append(f"{title} {citations.marker(ref, title)}")
    return "".join(out)


def _render(block: _Block, citations: _Citations, *, facts: int | None = None) -> str:
    lines = [_render_line(block.header, citations)]
    for fact in block.facts[:facts]:
        lines.append("  - " + _render_line(fact, citations))
    return "\n".join(lines)


def _clip(text: str | None, limit: int) -> str:
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _money(amount: Any, currency: str) -> str:
    return f"{amount:,.0f} {currency}" if amount is not None else "no amount"


def _date(value: datetime | None) -> str:
    return value.date().isoformat() if value else "?"


class ContextBuilder:
    """Builds prompt context from one organization's CRM; share one per process."""

    HEADER = "CRM records relevant to the question. Cite them by their [n] markers."

    def __init__(
        self,
        search: SemanticSearch,
        *,
        max_records: int = 6,
        related_per_kind: int = 3,
        body_chars: int = 300,
    ) -> None:
        self.search = search
        self.max_records = max_records
        self.related_per_kind = related_per_kind
        self.body_chars = body_chars

    def build(
        self,
        session: Session,
        organization_id: uuid.UUID,
        question: str,
        *,
        focus: EntityRef | None = None,
        token_budget: int = 1500,
        entity_types: Sequence[str] = EMBEDDABLE_TYPES,
    ) -> RagContext:
        if focus is not None and focus.entity_type not in EMBEDDABLE_TYPES:
            raise ValidationFailed(
                "unknown entity type", details=[field_error("focus.entity_type", "not a searchable record type")]
            )
        records: list[EntityRef] = []
        if focus is not None:
            records.append(focus)
        degraded = False
        if question.strip():
            result = self.search.search(
                session,
                organization_id,
                question,
                entity_types=entity_types,
                limit=self.max_records + 1,
                mode=SearchMode.HYBRID,
            )
            degraded = result.degraded
            for hit in result.hits:
                ref = EntityRef(hit.entity_type, hit.entity_id)
                if ref not in records:
                    records.append(ref)
        records = records[: self.max_records]

        citations = _Citations()
        chunks = [self.HEADER]
        used = estimate_tokens(self.HEADER)
        included: list[EntityRef] = []
        truncated = False
        for index, ref in enumerate(records):
            block = self._block(session, ref, focus=(ref == focus))
            if block is None:
                if index == 0 and focus is not None:
                    raise NotFound(f"{ref.entity_type} {ref.entity_id} not found", details={"id": str(ref.entity_id)})
                continue
            accepted = False
            for facts in (None, 1, 0):  # all facts, then the most important one, then the header alone
                trial = citations.copy()
                rendered = _render(block, trial, facts=facts)
                cost = estimate_tokens("\n\n" + rendered)
                if used + cost <= token_budget:
                    citations, used = trial, used + cost
                    chunks.append(rendered)
                    included.append(ref)
                    truncated = truncated or (facts is not None and facts < len(block.facts))
                    accepted = True
                    break
            if not accepted:
                truncated = True
                break
        text = "\n\n".join(chunks)
        return RagContext(
            question=question,
            text=text,
            citations=sorted(citations.by_ref.values(), key=lambda c: c.ref),
            records=included,
            token_estimate=estimate_tokens(text),
            token_budget=token_budget,
            truncated=truncated or len(included) < len(records),
            degraded=degraded,
        )

    # --- one block per record -----------------------------------------------------------------

    def _block(self, session: Session, ref: EntityRef, *, focus: bool) -> _Block | None:
        builders = {
            "company": self._company,
            "contact": self._contact,
            "deal": self._deal,
            "activity": self._activity,
        }
        return builders[ref.entity_type](session, ref.entity_id, focus)

    def _limit(self, focus: bool) -> int:
        return self.related_per_kind + (2 if focus else 0)

    def _company(self, session: Session, company_id: uuid.UUID, focus: bool) -> _Block | None:
        company = session.get(Company, company_id)
        if company is None:
            return None
        ref = EntityRef("company", company.id)
        details = ", ".join(p for p in (company.industry, company.city, company.country) if p)
        block = _Block(ref, [f"{'Focus: ' if focus else ''}Company ", (ref, company.name), f" — {details}"])
        if company.description:
            block.facts.append([f"About: {_clip(company.description, 200)}"])
        contact_ids = select(Contact.id).where(Contact.company_id == company.id)
        deal_ids = select(Deal.id).where(Deal.company_id == company.id)
        block.facts += self._open_deals(session, Deal.company_id == company.id, focus)
        contacts = (
            select(Contact).where(Contact.company_id == company.id).order_by(Contact.created_at, Contact.id)
        ).limit(self._limit(focus))
        for contact in session.scalars(contacts):
            name = person_name(contact.first_name, contact.last_name, contact.email)
            block.facts.append(
                ["Contact: ", (EntityRef("contact", contact.id), name), f", {contact.job_title or 'no title'}"]
            )
        block.facts += self._recent_activities(
            session,
            or_(
                Activity.company_id == company.id,
                Activity.contact_id.in_(contact_ids),
                Activity.deal_id.in_(deal_ids),
            ),
            focus,
        )
        return block

    def _contact(self, session: Session, contact_id: uuid.UUID, focus: bool) -> _Block | None:
        contact = session.get(Contact, contact_id)
        if contact is None:
            return None
        ref = EntityRef("contact", contact.id)
        name = person_name(contact.first_name, contact.last_name, contact.email)
        header: list[Part] = [f"{'Focus: ' if focus else ''}Contact ", (ref, name)]
        if contact.job_title:
            header.append(f" — {contact.job_title}")
        block = _Block(ref, header)
        company = session.get(Company, contact.company_id) if contact.company_id else None
        if company is not None:
            block.facts.append(["Company: ", (EntityRef("company", company.id), company.name)])
        block.facts.append([f"Lifecycle stage: {contact.lifecycle_stage}; email: {contact.email or 'unknown'}"])
        block.facts += self._open_deals(session, Deal.contact_id == contact.id, focus)
        block.facts += self._recent_activities(session, Activity.contact_id == contact.id, focus)
        return block

    def _deal(self, session: Session, deal_id: uuid.UUID, focus: bool) -> _Block | None:
        deal = session.get(Deal, deal_id)
        if deal is None:
            return None
        ref = EntityRef("deal", deal.id)
        close = f", expected close {deal.expected_close_date.isoformat()}" if deal.expected_close_date else ""
        block = _Block(
            ref,
            [
                f"{'Focus: ' if focus else ''}Deal ",
                (ref, deal.name),
                f" — {deal.status}, stage {deal.stage.name}, {_money(deal.amount, deal.currency)}{close}",
            ],
        )
        if deal.company_id and (company := session.get(Company, deal.company_id)) is not None:
            block.facts.append(["Company: ", (EntityRef("company", company.id), company.name)])
        if deal.contact_id and (contact := session.get(Contact, deal.contact_id)) is not None:
            name = person_name(contact.first_name, contact.last_name, contact.email)
            block.facts.append(["Contact: ", (EntityRef("contact", contact.id), name)])
        if deal.lost_reason:
            block.facts.append([f"Lost reason: {_clip(deal.lost_reason, 200)}"])
        block.facts += self._recent_activities(session, Activity.deal_id == deal.id, focus)
        return block

    def _activity(self, session: Session, activity_id: uuid.UUID, focus: bool) -> _Block | None:
        activity = session.get(Activity, activity_id)
        if activity is None:
            return None
        ref = EntityRef("activity", activity.id)
        title = activity_title(activity.type, activity.subject, activity.occurred_at)
        kind = f"{'Focus: ' if focus else ''}{activity.type.capitalize()}"
        block = _Block(ref, [f"{kind} on {_date(activity.occurred_at)}: ", (ref, title)])
        if activity.body:
            block.facts.append([_clip(activity.body, self.body_chars)])
        if activity.contact_id and (contact := session.get(Contact, activity.contact_id)) is not None:
            name = person_name(contact.first_name, contact.last_name, contact.email)
            block.facts.append(["With: ", (EntityRef("contact", contact.id), name)])
        company_id = activity.company_id
        if activity.deal_id and (deal := session.get(Deal, activity.deal_id)) is not None:
            block.facts.append(
                ["Deal: ", (EntityRef("deal", deal.id), deal.name), f" ({deal.status}, stage {deal.stage.name})"]
            )
            company_id = company_id or deal.company_id
        if company_id and (company := session.get(Company, company_id)) is not None:
            block.facts.append(["Company: ", (EntityRef("company", company.id), company.name)])
        return block

    # --- related facts ---------------------------------------------------------------------------

    def _open_deals(self, session: Session, condition: Any, focus: bool) -> list[list[Part]]:
        deals = session.scalars(
            select(Deal)
            .join(PipelineStage, PipelineStage.id == Deal.stage_id)
            .where(condition, PipelineStage.is_won.is_(False), PipelineStage.is_lost.is_(False))
            .order_by(Deal.amount.desc().nulls_last(), Deal.id)
            .limit(self._limit(focus))
        ).unique()
        return [
            [
                "Open deal: ",
                (EntityRef("deal", deal.id), deal.name),
                f" — stage {deal.stage.name}, {_money(deal.amount, deal.currency)}",
            ]
            for deal in deals
        ]

    def _recent_activities(self, session: Session, condition: Any, focus: bool) -> list[list[Part]]:
        activities = session.scalars(
            select(Activity)
            .where(condition)
            .order_by(Activity.occurred_at.desc(), Activity.id)
            .limit(self._limit(focus))
        )
        facts: list[list[Part]] = []
        for activity in activities:
            title = activity_title(activity.type, activity.subject, activity.occurred_at)
            summary = _clip(activity.body, 120)
            facts.append(
                [
                    f"Recent {activity.type} ({_date(activity.occurred_at)}): ",
                    (EntityRef("activity", activity.id), title),
                    f" — {summary}" if summary else "",
                ]
            )
        return facts
