"""``propose_change``: a create or update of any CRM record as a proposal with its exact field
diff, checked against the CRUD API's own input schemas before anyone reviews it. Nothing here
writes: the approval queue applies it, through the same CRM services, once a person approves."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy.orm import Session

from okyaku.agents.tooling import Proposal
from okyaku.agents.tools.records import CREATE_MODELS, SERVICES, UPDATE_MODELS, person_name
from okyaku.db.models import Company, Contact, Deal
from okyaku.errors import NotFound, ValidationFailed, field_error
from okyaku.validation import field_details

_LINKS: dict[str, Any] = {"company_id": Company, "contact_id": Contact, "deal_id": Deal}
EMAIL_REFUSAL = "emails go through draft_email (an email leaves the CRM, so it has its own approval rule)"


def action_name(operation: str, entity_type: str, values: dict[str, Any]) -> str:
    """The queue's action: the agents' names where one exists, so the approvals policy's rules
    (admin-only actions) apply to MCP proposals the same way."""
    if operation == "create" and entity_type == "activity":
        return "add_note" if values.get("type") == "note" else "log_activity"
    return f"{operation}_{entity_type}"


def build_proposal(
    session: Session, entity_type: str, entity_id: uuid.UUID | None, changes: dict[str, Any], reasoning: str
) -> tuple[str, Proposal]:
    if "version" in changes:
        raise ValidationFailed(
            "the record version is not a change",
            details=[field_error("changes.version", "left out: the proposal records the version it was made on")],
        )
    operation = "update" if entity_id is not None else "create"
    model = (UPDATE_MODELS if entity_id is not None else CREATE_MODELS)[entity_type]
    try:
        parsed = model.model_validate(changes)
    except ValidationError as error:
        raise ValidationFailed(
            f"the proposed {entity_type} is not valid", details=field_details(error, prefix="changes")
        ) from error
    # Python values (Decimal, date, UUID) to compare with the record; JSON for the stored diff.
    values: dict[str, Any] = {k: _normal(getattr(parsed, k)) for k in parsed.model_fields_set if k != "version"}
    links = _check_links(session, values)
    if entity_id is None:
        if entity_type == "activity" and values.get("type") == "email":
            raise ValidationFailed(EMAIL_REFUSAL, details=[field_error("changes.type", EMAIL_REFUSAL)])
        diff = {k: {"before": None, "after": _json(v)} for k, v in values.items() if v is not None and v != {}}
        return action_name(operation, entity_type, values), Proposal(
            "create", entity_type, None, diff, reasoning, context={"links": links} if links else {}
        )
    record: Any = SERVICES[entity_type].get(session, entity_id)  # another organization's: not found
    if entity_type == "activity" and record.type == "email":
        raise ValidationFailed(EMAIL_REFUSAL, details=[field_error("id", EMAIL_REFUSAL)])
    diff = _diff(record, values)
    if not diff:
        raise ValidationFailed(
            f"nothing to change: the {entity_type} already has these values",
            details=[field_error("changes", "every value equals the record's")],
            code="no_change",
        )
    context: dict[str, Any] = {
        "record": {"type": entity_type, "id": str(record.id), "name": _name(entity_type, record)}
    }
    if links:
        context["links"] = links
    return action_name(operation, entity_type, values), Proposal(
        "update", entity_type, record.id, diff, reasoning, base_version=record.version, context=context
    )


def _diff(record: Any, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """field -> before/after for what would really change (custom properties merge, as the CRM
    API does: only the keys given, with their current values)."""
    changes: dict[str, dict[str, Any]] = {}
    for key, after in values.items():
        if key == "custom_properties":
            current = record.custom_properties or {}
            proposed = {k: v for k, v in (after or {}).items() if current.get(k) != v}
            if proposed:
                changes[key] = {"before": {k: current.get(k) for k in proposed}, "after": _json(proposed)}
            continue
        before = getattr(record, key)
        if before != after:
            changes[key] = {"before": _json(before), "after": _json(after)}
    return changes


def _normal(value: Any) -> Any:
    # Money has two decimal places: 52000 and 52000.00 are the same amount, shown as stored.
    return value.quantize(Decimal("0.01")) if isinstance(value, Decimal) else value


def _json(value: Any) -> Any:
    return to_jsonable_python(value)


def _check_links(session: Session, values: dict[str, Any]) -> dict[str, Any]:
    """Linked records must exist in this organization; the reviewer sees their names."""
    described: dict[str, Any] = {}
    for field, model in _LINKS.items():
        raw = values.get(field)
        if raw is None:
            continue
        linked: Any = session.get(model, uuid.UUID(str(raw)))
        if linked is None:
            raise NotFound(f"{field[:-3]} {raw} not found", details={"field": f"changes.{field}", "id": str(raw)})
        described[field[:-3]] = {"id": str(raw), "name": _name(field[:-3], linked)}
    return described


def _name(entity_type: str, record: Any) -> str:
    if entity_type == "contact":
        return person_name(record)
    return str(
        getattr(record, "name", None) or getattr(record, "title", None) or getattr(record, "subject", None) or record.id
    )
