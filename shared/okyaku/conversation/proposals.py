"""Proposed CRM updates from an analysis, as pending actions of the approval queue.

Nothing here writes a CRM record: each proposal is a ``pending_actions`` row (agent
"conversation") that a person approves, edits or rejects through ``/api/v1/ai/approvals``, which
applies it through the CRM services. Every proposal's reasoning quotes the words it came from.

- the activity's deal: a stage move (the stated stage, by name, in the deal's pipeline), an
  expected close date, an amount — one proposal with the fields that would really change;
- the activity's contact: a job title or phone number stated for that person;
- a task per action item that has a due date, linked to the activity's contact, deal and company.

Without the LLM, the rules floor proposes the last kind only (agent "conversation rules floor"):
a task per action item that is an explicit commitment with a due date on or after the activity's
day, each once per activity and item, withdrawn when the LLM's analysis of the activity arrives.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from okyaku.agents.models import PendingAction
from okyaku.conversation.rules import is_explicit_commitment
from okyaku.conversation.schema import ActionItem, ConversationAnalysis, RulesActionItem, RulesFindings
from okyaku.conversation.store import ActivitySnapshot
from okyaku.crm.schemas import ContactUpdate, DealUpdate, TaskCreate
from okyaku.db.models import Contact, Deal, PipelineStage

AGENT = "conversation"
# The proposer the reviewer sees for tasks the rules floor found without the LLM.
RULES_AGENT = "conversation rules floor"


@dataclass
class Proposed:
    action: str
    operation: str
    entity_type: str
    entity_id: uuid.UUID | None
    changes: dict[str, dict[str, Any]]
    reasoning: str
    base_version: int | None
    low_risk: bool
    context: dict[str, Any] = field(default_factory=dict)


def _said(quote: str) -> str:
    return "\u201c" + " ".join(quote.split()) + "\u201d"


def _valid(model: type[BaseModel], changes: dict[str, dict[str, Any]]) -> bool:
    """The same input schema as the CRUD API: a proposal that could not be applied is not made."""
    try:
        model.model_validate({k: v["after"] for k, v in changes.items()})
    except ValidationError:
        return False
    return True


def _deal_proposal(session: Session, analysis: ConversationAnalysis, deal_id: uuid.UUID) -> Proposed | None:
    deal = session.get(Deal, deal_id)
    if deal is None:
        return None
    changes: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    quotes: dict[str, str] = {}
    signals = analysis.deal
    if signals.stage is not None:
        wanted = signals.stage.stage.strip().casefold()
        stages = session.scalars(select(PipelineStage).where(PipelineStage.pipeline_id == deal.pipeline_id)).all()
        stage = next((s for s in stages if s.name.casefold() == wanted), None)
        if stage is not None and stage.id != deal.stage_id:
            changes["stage_id"] = {
                "before": str(deal.stage_id),
                "after": str(stage.id),
                "before_label": deal.stage.name,
                "after_label": stage.name,
            }
            reasons.append(f"stage to {stage.name}: {_said(signals.stage.quote)}")
            quotes["stage_id"] = signals.stage.quote
    if signals.close_date is not None and signals.close_date.close_date != deal.expected_close_date:
        changes["expected_close_date"] = {
            "before": to_jsonable_python(deal.expected_close_date),
            "after": signals.close_date.close_date.isoformat(),
        }
        reasons.append(
            f"expected close date {signals.close_date.close_date.isoformat()}: {_said(signals.close_date.quote)}"
        )
        quotes["expected_close_date"] = signals.close_date.quote
    if signals.amount is not None:
        amount = Decimal(str(signals.amount.amount)).quantize(Decimal("0.01"))
        same_currency = signals.amount.currency is None or signals.amount.currency.upper() == deal.currency
        if same_currency and amount != deal.amount:
            changes["amount"] = {"before": to_jsonable_python(deal.amount), "after": str(amount)}
            reasons.append(f"amount {amount} {deal.currency}: {_said(signals.amount.quote)}")
            quotes["amount"] = signals.amount.quote
    if not changes or not _valid(DealUpdate, changes):
        return None
    return Proposed(
        action="update_deal",
        operation="update",
        entity_type="deal",
        entity_id=deal.id,
        changes=changes,
        reasoning="From the conversation: " + "; ".join(reasons),
        base_version=deal.version,
        low_risk=False,
        context={"record": {"type": "deal", "id": str(deal.id), "name": deal.name}, "quotes": quotes},
    )


def _names_match(person_name: str | None, contact: Contact) -> bool:
    if not person_name:
        return True
    words = {w.casefold().strip(".,") for w in person_name.split()}
    known = {n.casefold() for n in (contact.first_name, contact.last_name) if n}
    return bool(words & known)


def _contact_proposal(session: Session, analysis: ConversationAnalysis, contact_id: uuid.UUID) -> Proposed | None:
    contact = session.get(Contact, contact_id)
    if contact is None:
        return None
    changes: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    quotes: dict[str, str] = {}
    for fact in analysis.contact_facts:
        if fact.field in changes or not _names_match(fact.person_name, contact):
            continue
        value = fact.value.strip()
        if value and value != getattr(contact, fact.field):
            changes[fact.field] = {"before": getattr(contact, fact.field), "after": value}
            reasons.append(f"{fact.field.replace('_', ' ')} {value}: {_said(fact.quote)}")
            quotes[fact.field] = fact.quote
    if not changes or not _valid(ContactUpdate, changes):
        return None
    name = " ".join(p for p in (contact.first_name, contact.last_name) if p) or contact.email or str(contact.id)
    return Proposed(
        action="update_contact",
        operation="update",
        entity_type="contact",
        entity_id=contact.id,
        changes=changes,
        reasoning="From the conversation: " + "; ".join(reasons),
        base_version=contact.version,
        low_risk=False,
        context={"record": {"type": "contact", "id": str(contact.id), "name": name}, "quotes": quotes},
    )


def _task_proposals(
    analysis: ConversationAnalysis | RulesFindings, activity: ActivitySnapshot, *, from_rules: bool = False
) -> list[Proposed]:
    proposals = []
    for item in analysis.action_items:
        if item.due_date is None:
            continue
        owner = (
            item.owner_name
            if item.owner == "named" and item.owner_name
            else {"us": "us", "them": "the customer"}.get(item.owner, item.owner)
        )
        values: dict[str, Any] = {
            "title": item.description[:500],
            "description": f"Owner: {owner}. From the {activity.type}: {_said(item.quote)}",
            "due_date": datetime.combine(item.due_date, time(0, 0), tzinfo=UTC).isoformat(),
            "priority": "normal",
            "contact_id": str(activity.contact_id) if activity.contact_id else None,
            "deal_id": str(activity.deal_id) if activity.deal_id else None,
            "company_id": str(activity.company_id) if activity.company_id else None,
        }
        changes = {k: {"before": None, "after": v} for k, v in values.items() if v is not None}
        if not _valid(TaskCreate, changes):
            continue
        proposals.append(
            Proposed(
                action="create_task",
                operation="create",
                entity_type="task",
                entity_id=None,
                changes=changes,
                reasoning=(
                    ("Found by the rules floor (no language model): commitment" if from_rules else "Action item")
                    + f" due {item.due_date.isoformat()} (owner: {owner}): {_said(item.quote)}"
                ),
                base_version=None,
                low_risk=True,
                context={"quotes": {"task": item.quote}}
                | ({"method": "rules", "item_key": rules_item_key(item)} if from_rules else {}),
            )
        )
    return proposals


def propose_updates(session: Session, analysis: ConversationAnalysis, activity: ActivitySnapshot) -> list[Proposed]:
    proposals: list[Proposed] = []
    if activity.deal_id is not None and (deal := _deal_proposal(session, analysis, activity.deal_id)):
        proposals.append(deal)
    if activity.contact_id is not None and (contact := _contact_proposal(session, analysis, activity.contact_id)):
        proposals.append(contact)
    proposals.extend(_task_proposals(analysis, activity))
    return proposals


def rules_item_key(item: ActionItem | RulesActionItem) -> str:
    """The same commitment (words, case and spacing aside, and its date) is the same item, whatever
    its position: an edit elsewhere in the text does not propose it again."""
    words = " ".join(item.quote.casefold().split())
    return hashlib.sha256(f"{words}|{item.due_date}".encode()).hexdigest()[:32]


def rules_task_proposals(rules: RulesFindings, activity: ActivitySnapshot, *, today: date) -> list[Proposed]:
    """The rules floor's tasks: explicit commitments due today or later, and not before the
    activity's day (a date before it is rarely a due date: "we spoke on Monday"). A promise whose
    day has passed is history, not work to queue: months of imported notes would flood the queue."""
    earliest = max(activity.occurred_at.date(), today)
    kept = [
        item
        for item in rules.action_items
        if item.due_date is not None and item.due_date >= earliest and is_explicit_commitment(item.quote)
    ]
    unique = {rules_item_key(item): item for item in reversed(kept)}  # the first of repeated sentences
    return _task_proposals(
        RulesFindings(action_items=[i for i in kept if unique.get(rules_item_key(i)) is i]), activity, from_rules=True
    )


def rules_item_key_of(proposal: Proposed) -> str | None:
    key = proposal.context.get("item_key")
    return key if isinstance(key, str) else None


def _rules_proposals_of(activity_id: uuid.UUID) -> Any:
    return (PendingAction.agent == RULES_AGENT) & (PendingAction.context["source"]["id"].astext == str(activity_id))


def rules_proposal_keys(session: Session, activity_id: uuid.UUID) -> set[str]:
    """The items the rules floor has proposed for this activity, in any status."""
    keys = session.scalars(select(PendingAction.context["item_key"].astext).where(_rules_proposals_of(activity_id)))
    return {k for k in keys if k}


def rules_proposals_for(session: Session, activity_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[PendingAction]]:
    """The rules floor's proposals of these activities (any status), per activity: an activity's
    page links them to the approval queue as it does the LLM's."""
    if not activity_ids:
        return {}
    rows = session.scalars(
        select(PendingAction).where(
            PendingAction.agent == RULES_AGENT,
            PendingAction.context["source"]["id"].astext.in_([str(i) for i in activity_ids]),
        )
    )
    found: dict[uuid.UUID, list[PendingAction]] = {}
    for row in rows:
        found.setdefault(uuid.UUID(row.context["source"]["id"]), []).append(row)
    return found


def withdraw_rules_proposals(session: Session, activity_id: uuid.UUID, *, now: datetime) -> int:
    """The LLM has analysed the activity: the rules floor's proposals still pending are withdrawn,
    so a reviewer never sees the same task twice (the LLM's own proposals take their place)."""
    result = session.execute(
        update(PendingAction)
        .where(_rules_proposals_of(activity_id), PendingAction.status == "pending")
        .values(
            status="withdrawn",
            updated_at=now,
            result={"reason": "superseded by the language model's analysis of this activity"},
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


def store_proposals(
    session: Session,
    proposals: list[Proposed],
    *,
    activity: ActivitySnapshot,
    analysis_id: uuid.UUID | None,
    now: datetime,
    ttl: timedelta,
    agent: str = AGENT,
) -> list[uuid.UUID]:
    """Pending actions in the caller's transaction, so they exist exactly when the analysis does."""
    ids: list[uuid.UUID] = []
    for proposal in proposals:
        row = PendingAction(
            id=uuid.uuid4(),
            agent=agent,
            execution_id=None,
            action=proposal.action,
            operation=proposal.operation,
            entity_type=proposal.entity_type,
            entity_id=proposal.entity_id,
            changes=to_jsonable_python(proposal.changes),
            reasoning=proposal.reasoning,
            context={
                **proposal.context,
                "source": {"type": "activity", "id": str(activity.id), "version": activity.version},
                **({"analysis_id": str(analysis_id)} if analysis_id is not None else {}),
            },
            status="pending",
            low_risk=proposal.low_risk,
            base_version=proposal.base_version,
            expires_at=now + ttl,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        ids.append(row.id)
    session.flush()
    return ids
