"""Write tools. None of them writes: each reads what it needs (read-only), checks the change
against the CRM's own input schemas, and returns a :class:`Proposal` with the exact field diff.
The runner stores it as a pending action; only the approval queue applies it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import select
from sqlalchemy.orm import Session

from okyaku.agents.tooling import AgentTool, Proposal, ToolArgs, ToolContext, ToolFailed, tool
from okyaku.agents.tools.records import CREATE_MODELS, SERVICES, UPDATE_MODELS, person_name
from okyaku.crm.schemas import LeadStatus, LifecycleStage, TaskPriority
from okyaku.db.models import Company, Contact, Deal, PipelineStage
from okyaku.errors import NotFound, ValidationFailed
from okyaku.validation import field_details

Reasoning = Field(min_length=3, max_length=2000, description="Why this change, citing the facts you saw")
PropertyValue = str | int | float | bool | None


def _json(value: Any) -> Any:
    return to_jsonable_python(value)


def _diff(record: Any, after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """field -> before/after, for the fields that would really change."""
    changes: dict[str, dict[str, Any]] = {}
    for key, value in after.items():
        if key == "custom_properties":
            current = record.custom_properties or {}
            proposed = {k: v for k, v in value.items() if current.get(k) != v}
            if proposed:
                changes[key] = {"before": {k: current.get(k) for k in proposed}, "after": _json(proposed)}
            continue
        before = getattr(record, key)
        if _json(before) != _json(value) and before != value:
            changes[key] = {"before": _json(before), "after": _json(value)}
    return changes


def _creation(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {"before": None, "after": _json(v)} for k, v in values.items() if v is not None and v != {}}


def _check(model_kind: Literal["create", "update"], entity_type: str, changes: dict[str, dict[str, Any]]) -> None:
    """The change must pass the same input schema as the CRUD API, before anyone reviews it."""
    models = CREATE_MODELS if model_kind == "create" else UPDATE_MODELS
    try:
        models[entity_type].model_validate({k: v["after"] for k, v in changes.items()})
    except ValidationError as error:
        raise ValidationFailed(f"the proposed {entity_type} is not valid", details=field_details(error)) from error


def _links(
    session: Session,
    contact_id: uuid.UUID | None,
    deal_id: uuid.UUID | None,
    company_id: uuid.UUID | None,
    *,
    required: bool,
) -> dict[str, Any]:
    """Check the linked records exist (in this organization) and describe them for the reviewer."""
    if required and not (contact_id or deal_id or company_id):
        raise ValidationFailed(
            "link it to a record",
            details=[{"field": "contact_id", "message": "give a contact_id, deal_id or company_id", "type": "missing"}],
        )
    described: dict[str, Any] = {}
    for field, model, value in (
        ("contact", Contact, contact_id),
        ("deal", Deal, deal_id),
        ("company", Company, company_id),
    ):
        if value is None:
            continue
        record: Any = session.get(model, value)
        if record is None:
            raise NotFound(f"{field} {value} not found", details={"field": f"{field}_id", "id": str(value)})
        described[field] = {"id": str(value), "name": person_name(record) if field == "contact" else record.name}
    return described


# --- update_deal ---------------------------------------------------------------------------------


class UpdateDealArgs(ToolArgs):
    deal_id: uuid.UUID
    stage: str | None = Field(default=None, description="The new stage: its name (or id) in the deal's pipeline")
    amount: float | None = Field(default=None, ge=0)
    expected_close_date: date | None = None
    name: str | None = Field(default=None, min_length=1, max_length=300)
    lost_reason: str | None = Field(default=None, max_length=500)
    custom_properties: dict[str, PropertyValue] | None = None
    reasoning: str = Reasoning


def _resolve_stage(session: Session, pipeline_id: uuid.UUID, wanted: str) -> PipelineStage:
    stages = session.scalars(
        select(PipelineStage).where(PipelineStage.pipeline_id == pipeline_id).order_by(PipelineStage.position)
    ).all()
    for stage in stages:
        if str(stage.id) == wanted.strip() or stage.name.casefold() == wanted.strip().casefold():
            return stage
    raise ToolFailed(
        f"no stage {wanted!r} in the deal's pipeline",
        code="unknown_stage",
        details={"stages": [s.name for s in stages]},
    )


@tool(
    "update_deal",
    "Propose changing a deal's stage, amount, expected close date, name, lost reason or custom properties.",
    UpdateDealArgs,
    writes=True,
)
async def update_deal(ctx: ToolContext, args: UpdateDealArgs) -> Proposal:
    with ctx.read() as session:
        deal = SERVICES["deal"].get(session, args.deal_id)
        after: dict[str, Any] = {}
        labels: dict[str, str] = {}
        if args.stage is not None:
            stage = _resolve_stage(session, deal.pipeline_id, args.stage)
            after["stage_id"] = stage.id
            labels = {"before_label": deal.stage.name, "after_label": stage.name}
        if args.amount is not None:
            after["amount"] = Decimal(str(args.amount)).quantize(Decimal("0.01"))
        for name in ("expected_close_date", "name", "lost_reason", "custom_properties"):
            value = getattr(args, name)
            if value is not None:
                after[name] = value
        changes = _diff(deal, after)
        if "stage_id" in changes:
            changes["stage_id"].update(labels)
        if not changes:
            raise ToolFailed("nothing to change: the deal already has these values", code="no_change")
        _check("update", "deal", changes)
        return Proposal(
            operation="update",
            entity_type="deal",
            entity_id=deal.id,
            changes=changes,
            reasoning=args.reasoning,
            base_version=deal.version,
            context={"record": {"type": "deal", "id": str(deal.id), "name": deal.name, "stage": deal.stage.name}},
        )


# --- update_contact ------------------------------------------------------------------------------


class UpdateContactArgs(ToolArgs):
    contact_id: uuid.UUID
    lead_status: LeadStatus | None = None
    lifecycle_stage: LifecycleStage | None = None
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=50)
    job_title: str | None = Field(default=None, max_length=200)
    source: str | None = Field(default=None, max_length=200)
    custom_properties: dict[str, PropertyValue] | None = None
    reasoning: str = Reasoning


@tool(
    "update_contact",
    "Propose changing a contact's lead status, lifecycle stage, name, email, phone, job title, source or "
    "custom properties.",
    UpdateContactArgs,
    writes=True,
)
async def update_contact(ctx: ToolContext, args: UpdateContactArgs) -> Proposal:
    with ctx.read() as session:
        contact = SERVICES["contact"].get(session, args.contact_id)
        fields = args.model_dump(exclude={"contact_id", "reasoning"}, exclude_none=True)
        changes = _diff(contact, fields)
        if not changes:
            raise ToolFailed("nothing to change: the contact already has these values", code="no_change")
        _check("update", "contact", changes)
        return Proposal(
            operation="update",
            entity_type="contact",
            entity_id=contact.id,
            changes=changes,
            reasoning=args.reasoning,
            base_version=contact.version,
            context={"record": {"type": "contact", "id": str(contact.id), "name": person_name(contact)}},
        )


# --- create_task ---------------------------------------------------------------------------------


class CreateTaskArgs(ToolArgs):
    title: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=5000)
    due_date: date | None = None
    priority: TaskPriority = "normal"
    contact_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    reasoning: str = Reasoning


@tool(
    "create_task",
    "Propose a follow-up task (title, description, due date, priority), linked to a contact, deal or company.",
    CreateTaskArgs,
    writes=True,
    low_risk=True,
)
async def create_task(ctx: ToolContext, args: CreateTaskArgs) -> Proposal:
    with ctx.read() as session:
        links = _links(session, args.contact_id, args.deal_id, args.company_id, required=False)
    due = datetime(args.due_date.year, args.due_date.month, args.due_date.day, tzinfo=UTC) if args.due_date else None
    values = {
        "title": args.title,
        "description": args.description,
        "due_date": due,
        "priority": args.priority,
        "contact_id": args.contact_id,
        "deal_id": args.deal_id,
        "company_id": args.company_id,
    }
    changes = _creation(values)
    _check("create", "task", changes)
    return Proposal("create", "task", None, changes, args.reasoning, context={"links": links})


# --- log_activity / add_note ---------------------------------------------------------------------


class LogActivityArgs(ToolArgs):
    type: Literal["call", "meeting", "note"]
    subject: str | None = Field(default=None, max_length=500)
    body: str | None = Field(default=None, max_length=20_000)
    occurred_at: datetime | None = None
    direction: Literal["inbound", "outbound"] | None = None
    duration_minutes: int | None = Field(default=None, ge=0, le=24 * 60)
    contact_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    reasoning: str = Reasoning


@tool(
    "log_activity",
    "Propose logging a call, meeting or note that happened, linked to a contact, deal or company.",
    LogActivityArgs,
    writes=True,
    low_risk=True,
)
async def log_activity(ctx: ToolContext, args: LogActivityArgs) -> Proposal:
    with ctx.read() as session:
        links = _links(session, args.contact_id, args.deal_id, args.company_id, required=True)
    values = args.model_dump(exclude={"reasoning"}, exclude_none=True)
    changes = _creation(values)
    _check("create", "activity", changes)
    return Proposal("create", "activity", None, changes, args.reasoning, context={"links": links})


class AddNoteArgs(ToolArgs):
    body: str = Field(min_length=1, max_length=20_000)
    subject: str | None = Field(default=None, max_length=500)
    contact_id: uuid.UUID | None = None
    deal_id: uuid.UUID | None = None
    company_id: uuid.UUID | None = None
    reasoning: str = Reasoning


@tool(
    "add_note",
    "Propose adding a note to a contact, deal or company.",
    AddNoteArgs,
    writes=True,
    low_risk=True,
)
async def add_note(ctx: ToolContext, args: AddNoteArgs) -> Proposal:
    with ctx.read() as session:
        links = _links(session, args.contact_id, args.deal_id, args.company_id, required=True)
    values = {"type": "note", **args.model_dump(exclude={"reasoning"}, exclude_none=True)}
    changes = _creation(values)
    _check("create", "activity", changes)
    return Proposal("create", "activity", None, changes, args.reasoning, context={"links": links})


# --- draft_email ---------------------------------------------------------------------------------


class DraftEmailArgs(ToolArgs):
    contact_id: uuid.UUID
    subject: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)
    deal_id: uuid.UUID | None = None
    reasoning: str = Reasoning


@tool(
    "draft_email",
    "Draft an email to a contact and queue it for sending once a person approves it.",
    DraftEmailArgs,
    writes=True,
)
async def draft_email(ctx: ToolContext, args: DraftEmailArgs) -> Proposal:
    with ctx.read() as session:
        contact = SERVICES["contact"].get(session, args.contact_id)
        if not contact.email:
            raise ToolFailed(f"{person_name(contact)} has no email address", code="no_email_address")
        links = _links(session, args.contact_id, args.deal_id, None, required=True)
        values = {
            "type": "email",
            "direction": "outbound",
            "subject": args.subject,
            "body": args.body,
            "contact_id": contact.id,
            "deal_id": args.deal_id,
            "company_id": contact.company_id,
            # Approval records the email as queued for the mail sender; nothing is sent before that.
            "custom_properties": {"email_status": "queued", "email_to": contact.email},
        }
    changes = _creation(values)
    _check("create", "activity", changes)
    return Proposal("create", "activity", None, changes, args.reasoning, context={"links": links})


WRITE_TOOLS: tuple[AgentTool, ...] = (update_deal, update_contact, create_task, log_activity, add_note, draft_email)
