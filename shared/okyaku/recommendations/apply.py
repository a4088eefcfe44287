"""From a card to the concrete CRM write, as a proposal for the approval queue.

The card's ``action`` names the write: a task (create), an email draft (an outbound email
activity queued for sending, like the agents' ``draft_email``), a stage move (deal update), a
task's new due date (task update), or a note. Every one is checked against the CRUD API's input
schemas before it is proposed. The same risk rule as the agents: creating a task or a note is
low risk and is applied at once when ``AI_REQUIRE_APPROVAL_FOR_WRITES=false``; everything else
waits for a person."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy.orm import Session

from okyaku.agents.framework import Proposal
from okyaku.agents.tools.records import CREATE_MODELS, SERVICES, UPDATE_MODELS
from okyaku.errors import NotFound, ValidationFailed
from okyaku.recommendations.models import Recommendation

# action kind -> (the approval queue's action name, low risk)
ACTIONS: dict[str, tuple[str, bool]] = {
    "task": ("create_task", True),
    "note": ("add_note", True),
    "email": ("draft_email", False),
    "stage": ("update_deal", False),
    "task_due": ("update_task", False),
}


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(str(value)) if value else None


def _check(kind: str, entity_type: str, values: dict[str, Any]) -> None:
    models = CREATE_MODELS if kind == "create" else UPDATE_MODELS
    try:
        models[entity_type].model_validate(values)
    except ValidationError as error:
        raise ValidationFailed(
            f"the recommended {entity_type} is not valid",
            details=[
                {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", ""), "type": e["type"]}
                for e in error.errors()
            ],
        ) from error


def _creation(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {"before": None, "after": to_jsonable_python(v)} for k, v in values.items() if v is not None and v != {}}


def _day(now: datetime, days: int) -> datetime:
    due = (now + timedelta(days=days)).astimezone(UTC)
    return due.replace(hour=9, minute=0, second=0, microsecond=0)


def build_proposal(
    session: Session, card: Recommendation, now: datetime, draft: dict[str, str] | None
) -> tuple[Proposal, str, bool]:
    """The proposal for ``card`` (read-only: nothing is written here), its action name, low risk."""
    action: dict[str, Any] = dict(card.facts.get("action") or {})
    kind = str(action.get("kind"))
    if kind not in ACTIONS:
        raise ValidationFailed(f"this recommendation has no action to apply ({kind})")
    name, low_risk = ACTIONS[kind]
    links = action.get("links") or {}
    contact_id, deal_id, company_id = (_uuid(links.get(k)) for k in ("contact_id", "deal_id", "company_id"))
    reasoning = f"Recommendation '{card.rule}': {card.title}"
    context = {"recommendation_id": str(card.id), "rule": card.rule, "trigger_key": card.trigger_key}
    if kind == "task":
        values: dict[str, Any] = {
            "title": str(action["title"])[:500],
            "description": card.title,
            "due_date": _day(now, int(action.get("due_in_days", 1))),
            "priority": action.get("priority", "normal"),
            "assignee_id": card.owner_id,
            "contact_id": contact_id,
            "deal_id": deal_id,
            "company_id": company_id,
        }
        _check("create", "task", values)
        return Proposal("create", "task", None, _creation(values), reasoning, context=context), name, low_risk
    if kind == "note":
        values = {"type": "note", "subject": card.title[:500], "body": str(action.get("body") or card.title)}
        values |= {"contact_id": contact_id, "deal_id": deal_id, "company_id": company_id}
        _check("create", "activity", values)
        return Proposal("create", "activity", None, _creation(values), reasoning, context=context), name, low_risk
    if kind == "email":
        contact = SERVICES["contact"].get(session, uuid.UUID(str(action["contact_id"])))
        if not contact.email:
            raise ValidationFailed("the contact has no email address", details={"contact_id": str(contact.id)})
        chosen = draft or {"subject": str(action["subject"]), "body": str(action["body"])}
        values = {
            "type": "email",
            "direction": "outbound",
            "subject": chosen["subject"][:500],
            "body": chosen["body"],
            "contact_id": contact.id,
            "deal_id": deal_id,
            "company_id": contact.company_id,
            "custom_properties": {"email_status": "queued", "email_to": contact.email},
        }
        _check("create", "activity", values)
        return Proposal("create", "activity", None, _creation(values), reasoning, context=context), name, low_risk
    if kind == "stage":
        assert deal_id is not None
        deal = SERVICES["deal"].get(session, deal_id)
        target = uuid.UUID(str(action["stage_id"]))
        if deal.stage_id == target:
            raise ValidationFailed("the deal is already in that stage")
        changes = {
            "stage_id": {
                "before": str(deal.stage_id),
                "after": str(target),
                "before_label": deal.stage.name,
                "after_label": action.get("stage_name"),
            }
        }
        _check("update", "deal", {"stage_id": target})
        return (
            Proposal("update", "deal", deal.id, changes, reasoning, base_version=deal.version, context=context),
            name,
            low_risk,
        )
    task = SERVICES["task"].get(session, uuid.UUID(str(action["task_id"])))
    if task is None:  # pragma: no cover - get raises NotFound
        raise NotFound("task not found")
    due = _day(now, int(action.get("due_in_days", 1)))
    changes = {"due_date": {"before": to_jsonable_python(task.due_date), "after": to_jsonable_python(due)}}
    _check("update", "task", {"due_date": due})
    return (
        Proposal("update", "task", task.id, changes, reasoning, base_version=task.version, context=context),
        name,
        low_risk,
    )
