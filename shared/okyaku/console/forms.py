"""The console's record forms: which fields each kind of record shows, how a posted form becomes
the API's own input model, and how a record becomes form values again.

Writes go through okyaku.crm.entities (the same services and pydantic models as the API), so a
form gets the API's rules and the API's field errors; nothing here decides what is valid."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from okyaku.console.timezones import local_text, utc_text
from okyaku.crm.entities import ENTITIES
from okyaku.db.models import Company, Contact, Deal, Pipeline, PipelineStage, User
from okyaku.errors import ValidationFailed, field_error
from okyaku.runtime import Runtime
from okyaku.validation import field_details

Kind = Literal["text", "email", "number", "date", "datetime", "textarea", "choice", "ref", "stage", "properties"]
# The most records a related-record select lists (by name); the current choice is always there.
MAX_OPTIONS = 500
# Past MAX_OPTIONS records the select comes with a search box (the server searches, by name or
# email) and lists this many matches.
SEARCH_RESULTS = 50
UTC_ZONE = ZoneInfo("UTC")
# The prefix of the hidden fields that carry the values the form was opened with.
WAS = "was__"


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    kind: Kind = "text"
    required: bool = False
    choices: tuple[str, ...] = ()
    ref: str | None = None  # company, contact, deal, user
    hint: str = ""


LIFECYCLE = ("subscriber", "lead", "mql", "sql", "opportunity", "customer", "evangelist", "churned")
LEAD_STATUS = ("new", "open", "in_progress", "attempted", "connected", "qualified", "unqualified", "bad_timing")

FIELDS: dict[str, tuple[FormField, ...]] = {
    "company": (
        FormField("name", "Name", required=True),
        FormField("domain", "Domain", hint="example.com"),
        FormField("industry", "Industry"),
        FormField("employee_count", "Employees", "number"),
        FormField("annual_revenue", "Annual revenue", "number"),
        FormField("country", "Country"),
        FormField("city", "City"),
        FormField("owner_id", "Owner", "ref", ref="user"),
        FormField("description", "Description", "textarea"),
        FormField("custom_properties", "Custom properties", "properties", hint="One per line: name = value"),
    ),
    "contact": (
        FormField("first_name", "First name"),
        FormField("last_name", "Last name"),
        FormField("email", "Email", "email"),
        FormField("phone", "Phone"),
        FormField("job_title", "Job title"),
        FormField("company_id", "Company", "ref", ref="company"),
        FormField("lifecycle_stage", "Lifecycle stage", "choice", choices=LIFECYCLE),
        FormField("lead_status", "Lead status", "choice", choices=LEAD_STATUS),
        FormField("source", "Source"),
        FormField("owner_id", "Owner", "ref", ref="user"),
        FormField("custom_properties", "Custom properties", "properties", hint="One per line: name = value"),
    ),
    "deal": (
        FormField("name", "Name", required=True),
        FormField("stage_id", "Stage", "stage"),
        FormField("amount", "Amount", "number"),
        FormField("currency", "Currency", hint="Three letters, e.g. USD"),
        FormField("expected_close_date", "Expected close", "date"),
        FormField("company_id", "Company", "ref", ref="company"),
        FormField("contact_id", "Contact", "ref", ref="contact"),
        FormField("owner_id", "Owner", "ref", ref="user"),
        FormField("custom_properties", "Custom properties", "properties", hint="One per line: name = value"),
    ),
    "activity": (
        FormField("type", "Type", "choice", required=True, choices=("call", "meeting", "email", "note")),
        FormField("occurred_at", "When", "datetime"),
        FormField("subject", "Subject"),
        FormField("body", "Notes", "textarea"),
        FormField("duration_minutes", "Duration (minutes)", "number"),
        FormField("direction", "Direction", "choice", choices=("outbound", "inbound")),
        FormField("contact_id", "Contact", "ref", ref="contact"),
        FormField("company_id", "Company", "ref", ref="company"),
        FormField("deal_id", "Deal", "ref", ref="deal"),
    ),
    "task": (
        FormField("title", "Title", required=True),
        FormField("due_date", "Due", "datetime"),
        FormField("priority", "Priority", "choice", choices=("normal", "high", "low")),
        FormField("status", "Status", "choice", choices=("open", "in_progress", "done", "cancelled")),
        FormField("assignee_id", "Assignee", "ref", ref="user"),
        FormField("description", "Description", "textarea"),
        FormField("contact_id", "Contact", "ref", ref="contact"),
        FormField("company_id", "Company", "ref", ref="company"),
        FormField("deal_id", "Deal", "ref", ref="deal"),
    ),
}
# A new record's form starts with the create model's defaults (these selects have no empty option).
DEFAULTS = {
    "contact": {"lifecycle_stage": "lead"},
    "activity": {"type": "call"},
    "task": {"priority": "normal", "status": "open"},
}


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True)
class OptionGroup:
    label: str
    options: Sequence[Option]


@dataclass
class FormState:
    """What the form template needs: the fields, their values and errors, the related-record options."""

    entity: str
    fields: tuple[FormField, ...]
    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    general_errors: list[str] = field(default_factory=list)
    options: dict[str, Sequence[Option]] = field(default_factory=dict)
    stage_groups: Sequence[OptionGroup] = ()
    version: int | None = None
    was: dict[str, str] = field(default_factory=dict)
    changed_by_others: list[tuple[str, str, str]] = field(default_factory=list)
    # Related-record fields with too many records for one select: field -> the search typed.
    searchable: dict[str, str] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)  # field -> records it can name


def as_text(value: Any, zone: ZoneInfo = UTC_ZONE) -> str:
    """A stored value as a form control shows it (a moment on the wall clock of ``zone``)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return "\n".join(f"{k} = {'' if v is None else v}" for k, v in sorted(value.items()))
    if isinstance(value, datetime):
        return local_text(value, zone)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    return str(value)


def record_values(entity: str, record: Any, zone: ZoneInfo = UTC_ZONE) -> dict[str, str]:
    return {f.name: as_text(getattr(record, f.name, None), zone) for f in FIELDS[entity]}


def posted_values(entity: str, form: Mapping[str, Any]) -> dict[str, str]:
    return {f.name: str(form.get(f.name) or "").strip() for f in FIELDS[entity]}


def posted_searches(entity: str, form: Mapping[str, Any]) -> dict[str, str]:
    """What was typed in the related-record search boxes (``q_<field>``)."""
    return {f.name: str(form.get("q_" + f.name) or "").strip() for f in FIELDS[entity] if f.kind == "ref"}


def search_requested(entity: str, form: Mapping[str, Any]) -> bool:
    """The form was sent by a related-record Search button (no JavaScript), with words to search:
    show it again with the matches instead of saving. (Enter in any field presses the first
    button, a Search one: with nothing typed to search, that saves.)"""
    name = str(form.get("search_ref") or "")
    return bool(name) and bool(posted_searches(entity, form).get(name))


def posted_was(entity: str, form: Mapping[str, Any]) -> dict[str, str]:
    return {f.name: str(form.get(WAS + f.name) or "") for f in FIELDS[entity]}


def parse_properties(text: str) -> dict[str, str]:
    """``name = value`` lines (blank lines ignored); a line without ``=`` is a field error."""
    properties: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ValidationFailed(
                "the request is not valid",
                details=[field_error("custom_properties", f"line {number}: write it as name = value")],
            )
        properties[name.strip()] = value.strip()
    return properties


def input_payload(
    session: Session,
    entity: str,
    values: Mapping[str, str],
    *,
    create: bool,
    was: Mapping[str, str] | None = None,
    zone: ZoneInfo = UTC_ZONE,
) -> dict[str, Any]:
    """The API input of a posted form: empty controls are left out of a new record and clear a
    field of an existing one (as ``null`` does in a PATCH)."""
    was = was or {}
    payload: dict[str, Any] = {}
    for spec in FIELDS[entity]:
        text = values.get(spec.name, "")
        if spec.kind == "properties":
            properties: dict[str, str | None] = dict(parse_properties(text))
            if not create:
                # Only what the user changed: the service merges what it is sent, a removed line
                # is cleared, and untouched values keep their stored type (a number stays one).
                before = parse_properties(was.get(spec.name, ""))
                properties = {k: v for k, v in properties.items() if before.get(k) != v}
                properties.update({k: None for k in before if k not in parse_properties(text)})
            if properties:
                payload[spec.name] = properties
            continue
        if text == "" and create:
            continue
        if spec.kind == "datetime" and text:
            text = utc_text(text, zone)  # typed on the wall clock of the user's zone
        payload[spec.name] = text or None
    if entity == "deal" and payload.get("stage_id"):
        # The stage select names pipeline and stage at once: its pipeline goes with it.
        payload["pipeline_id"] = stage_pipeline(session, payload["stage_id"])
    return payload


def stage_pipeline(session: Session, stage_id: str) -> str | None:
    try:
        parsed = uuid.UUID(stage_id)
    except ValueError:
        return None
    found = session.scalar(select(PipelineStage.pipeline_id).where(PipelineStage.id == parsed))
    return str(found) if found else None


def validated(entity: str, payload: Mapping[str, Any], *, create: bool) -> Any:
    """The API's input model of ``payload``; its errors named by field, as the API names them."""
    crm = ENTITIES[entity]
    model = crm.create_model if create else crm.update_model
    try:
        return model.model_validate(dict(payload))
    except ValidationError as error:
        raise ValidationFailed("the request is not valid", details=field_details(error)) from error


def errors_by_field(entity: str, error: ValidationFailed) -> tuple[dict[str, str], list[str]]:
    """A validation error's details by form field; the rest (about the whole input) apart."""
    names = {f.name for f in FIELDS[entity]}
    by_field: dict[str, str] = {}
    general: list[str] = []
    for detail in error.details or []:
        name = str(detail.get("field", ""))
        if name == "pipeline_id":
            name = "stage_id"
        if name in names:
            by_field.setdefault(name, str(detail.get("message", "")))
        else:
            general.append(str(detail.get("message", "")))
    if not error.details:
        general.append(error.message)
    return by_field, general


def contact_label(contact: Contact) -> str:
    name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
    return f"{name} <{contact.email}>" if name and contact.email else (name or contact.email or "Unnamed contact")


def reference_options(session: Session, ref: str, current: str) -> list[Option]:
    """Records to choose by name, in name order (the current choice included even past the limit)."""
    options: list[Option] = []
    if ref == "company":
        rows = session.execute(select(Company.id, Company.name).order_by(Company.name).limit(MAX_OPTIONS))
        options = [Option(str(i), n) for i, n in rows]
    elif ref == "contact":
        statement = select(Contact).order_by(Contact.last_name, Contact.first_name).limit(MAX_OPTIONS)
        options = [Option(str(c.id), contact_label(c)) for c in session.scalars(statement)]
    elif ref == "deal":
        rows = session.execute(select(Deal.id, Deal.name).order_by(Deal.name).limit(MAX_OPTIONS))
        options = [Option(str(i), n) for i, n in rows]
    elif ref == "user":
        users = session.execute(select(User.id, User.name, User.email).order_by(User.name).limit(MAX_OPTIONS))
        options = [Option(str(i), n or e) for i, n, e in users]
    if current and all(o.value != current for o in options):
        label = current_label(session, ref, current)
        if label:
            options.insert(0, Option(current, label))
    return options


REF_MODELS: dict[str, Any] = {"company": Company, "contact": Contact, "deal": Deal, "user": User}


def reference_count(session: Session, ref: str) -> int:
    return int(session.scalar(select(func.count()).select_from(REF_MODELS[ref])) or 0)


def search_reference_options(
    session: Session, ref: str, q: str, current: str, limit: int = SEARCH_RESULTS
) -> list[Option]:
    """Records whose name (contacts: name or email) contains every word of ``q``, in name order;
    the current choice first when it is not among them."""
    words = q.split()[:8]
    model = REF_MODELS[ref]
    if ref == "contact":
        haystack: Any = func.concat_ws(" ", Contact.first_name, Contact.last_name, Contact.email)
        order: tuple[Any, ...] = (Contact.last_name, Contact.first_name, Contact.id)
    elif ref == "user":
        haystack = func.concat_ws(" ", User.name, User.email)
        order = (User.name, User.id)
    else:
        haystack = model.name
        order = (model.name, model.id)
    statement = select(model).order_by(*order).limit(limit)
    for word in words:
        # The word literally: % and _ in it are not wildcards.
        escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(haystack.ilike(f"%{escaped}%", escape="\\"))
    options = [Option(str(r.id), label_of(ref, r)) for r in session.scalars(statement)]
    if current and all(o.value != current for o in options):
        label = current_label(session, ref, current)
        if label:
            options.insert(0, Option(current, label))
    return options


def label_of(ref: str, record: Any) -> str:
    if ref == "contact":
        return contact_label(record)
    if ref == "user":
        return str(record.name or record.email)
    return str(record.name)


def current_label(session: Session, ref: str, value: str) -> str | None:
    try:
        record_id = uuid.UUID(value)
    except ValueError:
        return None
    record = session.get(REF_MODELS[ref], record_id)
    return None if record is None else label_of(ref, record)


def stage_groups(session: Session) -> list[OptionGroup]:
    pipelines = session.scalars(select(Pipeline).order_by(Pipeline.is_default.desc(), Pipeline.created_at))
    return [OptionGroup(p.name, [Option(str(s.id), s.name) for s in p.stages]) for p in pipelines]


def form_state(
    session: Session, entity: str, values: dict[str, str], searches: Mapping[str, str] | None = None, **extra: Any
) -> FormState:
    """The form's state; ``searches`` (field -> words) narrows the related-record selects that
    have a search box (more than MAX_OPTIONS records to choose from)."""
    state = FormState(entity, FIELDS[entity], values, **extra)
    searches = searches or {}
    for spec in state.fields:
        if spec.kind == "ref" and spec.ref:
            current = values.get(spec.name, "")
            total = state.totals[spec.name] = reference_count(session, spec.ref)
            if total > MAX_OPTIONS:
                q = searches.get(spec.name, "").strip()
                state.searchable[spec.name] = q
                state.options[spec.name] = search_reference_options(session, spec.ref, q, current)
            else:
                state.options[spec.name] = reference_options(session, spec.ref, current)
        elif spec.kind == "stage":
            state.stage_groups = stage_groups(session)
    return state


def changes_since(
    entity: str, was: Mapping[str, str], record: Any, zone: ZoneInfo = UTC_ZONE
) -> list[tuple[str, str, str]]:
    """(label, value when the form was opened, value now) of each field someone else changed."""
    now = record_values(entity, record, zone)
    return [(f.label, was.get(f.name, ""), now[f.name]) for f in FIELDS[entity] if was.get(f.name, "") != now[f.name]]


@dataclass(frozen=True)
class DeleteImpact:
    """What goes with a record that is deleted: linked records deleted, and links cleared."""

    deleted: dict[str, int]
    unlinked: dict[str, int]


PLURAL_NAMES = {
    "company": "companies",
    "contact": "contacts",
    "deal": "deals",
    "activity": "activities",
    "task": "tasks",
}


def delete_impact(session: Session, entity: str, record_id: uuid.UUID) -> DeleteImpact:
    spec = ENTITIES[entity].service.spec
    from okyaku.crm.records import ENTITY_OF_MODEL

    def counts(columns: Sequence[Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for column in columns:
            n = session.scalar(select(func.count()).select_from(column.class_).where(column == record_id)) or 0
            if n:
                out[PLURAL_NAMES[ENTITY_OF_MODEL[column.class_]]] = int(n)
        return out

    return DeleteImpact(deleted=counts(spec.cascades), unlinked=counts(spec.detaches))


# --- writes: through the API's services, in one organization-scoped transaction each ------------


def create_record(
    runtime: Runtime,
    organization_id: uuid.UUID,
    actor: uuid.UUID | None,
    entity: str,
    values: Mapping[str, str],
    zone: ZoneInfo = UTC_ZONE,
) -> uuid.UUID:
    with runtime.transaction(organization_id) as session:
        body = validated(entity, input_payload(session, entity, values, create=True, zone=zone), create=True)
        record = ENTITIES[entity].service.create(session, body, actor=actor)
        return uuid.UUID(str(record.id))


def update_record(
    runtime: Runtime,
    organization_id: uuid.UUID,
    actor: uuid.UUID | None,
    entity: str,
    record_id: uuid.UUID,
    payload: Mapping[str, Any],
    *,
    version: int | None,
) -> Any:
    """Apply a patch (only the fields in ``payload``) if the record is still at ``version``."""
    with runtime.transaction(organization_id) as session:
        body = validated(entity, payload, create=False)
        return ENTITIES[entity].service.update(session, record_id, body, expected_version=version, actor=actor)


def update_from_form(
    runtime: Runtime,
    organization_id: uuid.UUID,
    actor: uuid.UUID | None,
    entity: str,
    record_id: uuid.UUID,
    values: Mapping[str, str],
    *,
    version: int | None,
    was: Mapping[str, str] | None = None,
    zone: ZoneInfo = UTC_ZONE,
) -> None:
    with runtime.transaction(organization_id) as session:
        payload = input_payload(session, entity, values, create=False, was=was, zone=zone)
        body = validated(entity, payload, create=False)
        ENTITIES[entity].service.update(session, record_id, body, expected_version=version, actor=actor)


def delete_record(
    runtime: Runtime, organization_id: uuid.UUID, entity: str, record_id: uuid.UUID, *, version: int | None
) -> None:
    with runtime.transaction(organization_id) as session:
        ENTITIES[entity].service.delete(session, record_id, expected_version=version)


@dataclass(frozen=True)
class BulkResult:
    done: int
    refused: list[str]  # why each refused record was refused


def bulk_apply(
    runtime: Runtime,
    organization_id: uuid.UUID,
    actor: uuid.UUID | None,
    entity: str,
    record_ids: Sequence[uuid.UUID],
    *,
    owner_id: uuid.UUID | None = None,
    delete: bool = False,
) -> BulkResult:
    """Assign an owner to (or delete) each record through its service, one transaction and one
    change event per record, so one refusal (gone meanwhile, say) does not undo the others."""
    from okyaku.errors import OkyakuError

    done, refused = 0, []
    for record_id in record_ids:
        try:
            if delete:
                delete_record(runtime, organization_id, entity, record_id, version=None)
            else:
                update_record(runtime, organization_id, actor, entity, record_id, {"owner_id": owner_id}, version=None)
            done += 1
        except OkyakuError as error:
            refused.append(f"{record_id}: {error.message}")
    return BulkResult(done, refused)
