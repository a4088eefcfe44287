"""Create, read, update, delete and list CRM records, each write with its change event."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.exc import StaleDataError

from okyaku.crm.custom_properties import merge_custom_properties, register_custom_properties
from okyaku.crm.listing import ListParams, SortField, apply_listing, encode_cursor, text_query
from okyaku.db.models import Activity, Base, Company, Contact, Deal, Pipeline, Task, User
from okyaku.errors import Conflict, NotFound, ValidationFailed, field_error
from okyaku.events import record_change, record_changes

Record = Any  # an ORM instance of one of the CRM models


@dataclass(frozen=True)
class EntitySpec:
    """What the generic service needs to know about one kind of record."""

    entity_type: str
    model: type[Base]
    references: Mapping[str, type[Base]] = field(default_factory=dict)
    sort_fields: Mapping[str, SortField] = field(default_factory=dict)
    default_sort: str = "-created_at"
    # filter name -> (column, operator); operators: eq, ge, lt
    filters: Mapping[str, tuple[InstrumentedAttribute[Any], str]] = field(default_factory=dict)
    # child records deleted with this one (their own change events are emitted)
    cascades: Sequence[InstrumentedAttribute[Any]] = ()
    # links in other records cleared when this one is deleted (their updates are emitted)
    detaches: Sequence[InstrumentedAttribute[Any]] = ()

    @property
    def label(self) -> str:
        return self.entity_type


@dataclass(frozen=True)
class PageResult:
    rows: list[Record]
    next_cursor: str | None


def _now() -> datetime:
    return datetime.now(UTC)


class RecordService:
    """Generic CRUD over one entity; subclasses add the entity's own rules."""

    def __init__(self, spec: EntitySpec) -> None:
        self.spec = spec

    # --- reads ---------------------------------------------------------------------------

    def get(self, session: Session, record_id: uuid.UUID) -> Record:
        # RLS makes another organization's row invisible: it is simply not found.
        record = session.get(self.spec.model, record_id)
        if record is None:
            raise NotFound(f"{self.spec.label} {record_id} not found", details={"id": str(record_id)})
        return record

    def list_page(self, session: Session, params: ListParams, filters: Mapping[str, Any]) -> PageResult:
        model: Any = self.spec.model
        statement: Select[Any] = select(model)
        for condition in self._filter_conditions(filters):
            statement = statement.where(condition)
        statement, _sort, sort_field = apply_listing(
            statement,
            id_column=model.id,
            search_column=getattr(model, "search_vector", None),
            sort_fields=self.spec.sort_fields,
            default_sort=self.spec.default_sort,
            params=params,
        )
        rows = list(session.scalars(statement).unique())
        next_cursor = None
        if len(rows) > params.limit:
            rows = rows[: params.limit]
            last = rows[-1]
            value = getattr(last, sort_field.column.key)
            next_cursor = encode_cursor(_sort, sort_field.null_as if value is None else value, last.id)
        return PageResult(rows=rows, next_cursor=next_cursor)

    def count(self, session: Session, filters: Mapping[str, Any], q: str | None = None) -> int:
        """How many records ``list_page`` would go through with these filters and search."""
        model: Any = self.spec.model
        statement = select(func.count()).select_from(model)
        for condition in self._filter_conditions(filters):
            statement = statement.where(condition)
        search_column = getattr(model, "search_vector", None)
        tsquery = text_query(q) if q else None
        if tsquery and search_column is not None:
            statement = statement.where(search_column.op("@@")(func.to_tsquery("simple", tsquery)))
        return int(session.scalar(statement) or 0)

    def _filter_conditions(self, filters: Mapping[str, Any]) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        for name, value in filters.items():
            if value is None or name not in self.spec.filters:
                continue
            column, operator = self.spec.filters[name]
            if operator == "eq":
                conditions.append(column == value)
            elif operator == "ge":
                conditions.append(column >= value)
            elif operator == "lt":
                conditions.append(column < value)
        return conditions

    # --- writes --------------------------------------------------------------------------

    def create(self, session: Session, data: BaseModel, actor: uuid.UUID | None = None) -> Record:
        values = data.model_dump(exclude_unset=False)
        self._check_references(session, values)
        values = self.prepare_create(session, values, actor)
        record: Any = self.spec.model(**values)
        session.add(record)
        session.flush()
        register_custom_properties(session, self.spec.entity_type, values.get("custom_properties") or {})
        self.after_create(session, record, actor)
        record_change(
            session,
            entity_type=self.spec.entity_type,
            entity_id=record.id,
            operation="created",
            version=record.version,
            changed_fields=[k for k, v in values.items() if v is not None],
        )
        session.refresh(record)
        return record

    def update(
        self,
        session: Session,
        record_id: uuid.UUID,
        patch: BaseModel,
        *,
        expected_version: int | None = None,
        actor: uuid.UUID | None = None,
    ) -> Record:
        # Fields the client sent (nested values complete with their defaults).
        changes = {k: v for k, v in patch.model_dump().items() if k in patch.model_fields_set}
        version = changes.pop("version", None) or expected_version
        record = self.get(session, record_id)
        if version is not None and version != record.version:
            raise Conflict(
                f"{self.spec.label} {record_id} was changed by someone else",
                details={"expected_version": version, "current_version": record.version},
            )
        self._check_references(session, changes)
        if "custom_properties" in changes:
            changes["custom_properties"] = merge_custom_properties(
                record.custom_properties, changes["custom_properties"] or {}
            )
        self._refuse_nulls(changes)
        changes = self.prepare_update(session, record, changes, actor)
        changed = {k: v for k, v in changes.items() if getattr(record, k) != v}
        if not changed:
            return record  # nothing to do: no new version, no event
        for key, value in changed.items():
            setattr(record, key, value)
        record.updated_at = _now()
        try:
            session.flush()
        except StaleDataError as error:
            raise Conflict(f"{self.spec.label} {record_id} was changed concurrently; read it again") from error
        register_custom_properties(session, self.spec.entity_type, changed.get("custom_properties") or {})
        self.after_update(session, record, changed, actor)
        record_change(
            session,
            entity_type=self.spec.entity_type,
            entity_id=record.id,
            operation="updated",
            version=record.version,
            changed_fields=changed.keys(),
        )
        session.refresh(record)
        return record

    def delete(self, session: Session, record_id: uuid.UUID, *, expected_version: int | None = None) -> None:
        record = self.get(session, record_id)
        if expected_version is not None and expected_version != record.version:
            raise Conflict(
                f"{self.spec.label} {record_id} was changed by someone else",
                details={"expected_version": expected_version, "current_version": record.version},
            )
        self.before_delete(session, record)
        # Set-based, however many records hang off this one (a company with 10k contacts): one
        # statement per linked table and one INSERT of their change events.
        for fk_column in self.spec.cascades:
            child_model: Any = fk_column.class_
            children = session.execute(select(child_model.id, child_model.version).where(fk_column == record_id))
            record_changes(
                session,
                entity_type=ENTITY_OF_MODEL[child_model],
                changes=[(row.id, row.version) for row in children],
                operation="deleted",
            )
        for fk_column in self.spec.detaches:
            linked_model: Any = fk_column.class_
            detached = session.execute(
                update(linked_model)
                .where(fk_column == record_id)
                .values({fk_column.key: None, "version": linked_model.version + 1, "updated_at": _now()})
                .returning(linked_model.id, linked_model.version)
                .execution_options(synchronize_session="fetch")
            )
            record_changes(
                session,
                entity_type=ENTITY_OF_MODEL[linked_model],
                changes=[(row.id, row.version) for row in detached],
                operation="updated",
                changed_fields=[fk_column.key],
            )
        session.delete(record)
        try:
            session.flush()
        except StaleDataError as error:
            raise Conflict(f"{self.spec.label} {record_id} was changed concurrently; read it again") from error
        record_change(
            session,
            entity_type=self.spec.entity_type,
            entity_id=record_id,
            operation="deleted",
            version=record.version,
        )

    # --- hooks ---------------------------------------------------------------------------

    def prepare_create(self, session: Session, values: dict[str, Any], actor: uuid.UUID | None) -> dict[str, Any]:
        return values

    def prepare_update(
        self, session: Session, record: Record, changes: dict[str, Any], actor: uuid.UUID | None
    ) -> dict[str, Any]:
        return changes

    def after_create(self, session: Session, record: Record, actor: uuid.UUID | None) -> None:
        return None

    def after_update(self, session: Session, record: Record, changed: dict[str, Any], actor: uuid.UUID | None) -> None:
        return None

    def before_delete(self, session: Session, record: Record) -> None:
        return None

    def _refuse_nulls(self, changes: Mapping[str, Any]) -> None:
        """A required field cannot be cleared: say so on the field, rather than let Postgres refuse."""
        columns = self.spec.model.__table__.columns
        errors = [
            field_error(name, "cannot be null", "missing")
            for name, value in changes.items()
            if value is None and name in columns and not columns[name].nullable
        ]
        if errors:
            raise ValidationFailed("required fields cannot be cleared", details=errors)

    def _check_references(self, session: Session, values: Mapping[str, Any]) -> None:
        """Foreign keys are checked by Postgres without RLS, so check visibility here."""
        errors = []
        for name, model in self.spec.references.items():
            ref = values.get(name)
            if ref is not None and session.get(model, ref) is None:
                errors.append(field_error(name, f"no {ENTITY_OF_MODEL.get(model, 'user')} with id {ref}", "not_found"))
        if errors:
            raise ValidationFailed("referenced records do not exist", details=errors)


ENTITY_OF_MODEL: dict[Any, str] = {
    Company: "company",
    Contact: "contact",
    Pipeline: "pipeline",
    Deal: "deal",
    Activity: "activity",
    Task: "task",
    User: "user",
}

_CREATED = SortField(Company.created_at)

COMPANY_SPEC = EntitySpec(
    entity_type="company",
    model=Company,
    references={"owner_id": User},
    sort_fields={
        "created_at": SortField(Company.created_at),
        "updated_at": SortField(Company.updated_at),
        "name": SortField(Company.name),
        "annual_revenue": SortField(Company.annual_revenue, -1),
        "employee_count": SortField(Company.employee_count, -1),
    },
    filters={
        "owner_id": (Company.owner_id, "eq"),
        "industry": (Company.industry, "eq"),
        "country": (Company.country, "eq"),
        "domain": (Company.domain, "eq"),
        "created_after": (Company.created_at, "ge"),
        "created_before": (Company.created_at, "lt"),
        "updated_after": (Company.updated_at, "ge"),
    },
    cascades=(Activity.company_id, Task.company_id),
    detaches=(Contact.company_id, Deal.company_id),
)

CONTACT_SPEC = EntitySpec(
    entity_type="contact",
    model=Contact,
    references={"owner_id": User, "company_id": Company},
    sort_fields={
        "created_at": SortField(Contact.created_at),
        "updated_at": SortField(Contact.updated_at),
        "last_name": SortField(Contact.last_name, ""),
        "email": SortField(Contact.email, ""),
    },
    filters={
        "owner_id": (Contact.owner_id, "eq"),
        "company_id": (Contact.company_id, "eq"),
        "lifecycle_stage": (Contact.lifecycle_stage, "eq"),
        "lead_status": (Contact.lead_status, "eq"),
        "source": (Contact.source, "eq"),
        "email": (Contact.email, "eq"),
        "created_after": (Contact.created_at, "ge"),
        "created_before": (Contact.created_at, "lt"),
        "updated_after": (Contact.updated_at, "ge"),
    },
    cascades=(Activity.contact_id, Task.contact_id),
    detaches=(Deal.contact_id,),
)

PIPELINE_SPEC = EntitySpec(
    entity_type="pipeline",
    model=Pipeline,
    sort_fields={"created_at": SortField(Pipeline.created_at), "name": SortField(Pipeline.name)},
    default_sort="created_at",
)

DEAL_SPEC = EntitySpec(
    entity_type="deal",
    model=Deal,
    references={"owner_id": User, "company_id": Company, "contact_id": Contact, "pipeline_id": Pipeline},
    sort_fields={
        "created_at": SortField(Deal.created_at),
        "updated_at": SortField(Deal.updated_at),
        "name": SortField(Deal.name),
        "amount": SortField(Deal.amount, -1),
        "expected_close_date": SortField(Deal.expected_close_date, "1900-01-01"),
        "closed_at": SortField(Deal.closed_at, "1900-01-01T00:00:00Z"),
    },
    filters={
        "owner_id": (Deal.owner_id, "eq"),
        "pipeline_id": (Deal.pipeline_id, "eq"),
        "stage_id": (Deal.stage_id, "eq"),
        "company_id": (Deal.company_id, "eq"),
        "contact_id": (Deal.contact_id, "eq"),
        "expected_close_after": (Deal.expected_close_date, "ge"),
        "expected_close_before": (Deal.expected_close_date, "lt"),
        "closed_after": (Deal.closed_at, "ge"),
        "closed_before": (Deal.closed_at, "lt"),
        "created_after": (Deal.created_at, "ge"),
        "created_before": (Deal.created_at, "lt"),
    },
    cascades=(Activity.deal_id, Task.deal_id),
)

ACTIVITY_SPEC = EntitySpec(
    entity_type="activity",
    model=Activity,
    references={"owner_id": User, "company_id": Company, "contact_id": Contact, "deal_id": Deal},
    sort_fields={
        "occurred_at": SortField(Activity.occurred_at),
        "created_at": SortField(Activity.created_at),
    },
    default_sort="-occurred_at",
    filters={
        "type": (Activity.type, "eq"),
        "owner_id": (Activity.owner_id, "eq"),
        "contact_id": (Activity.contact_id, "eq"),
        "company_id": (Activity.company_id, "eq"),
        "deal_id": (Activity.deal_id, "eq"),
        "occurred_after": (Activity.occurred_at, "ge"),
        "occurred_before": (Activity.occurred_at, "lt"),
    },
)

TASK_SPEC = EntitySpec(
    entity_type="task",
    model=Task,
    references={"assignee_id": User, "company_id": Company, "contact_id": Contact, "deal_id": Deal},
    sort_fields={
        "created_at": SortField(Task.created_at),
        "due_date": SortField(Task.due_date, "9999-12-31T00:00:00Z"),
        "updated_at": SortField(Task.updated_at),
    },
    filters={
        "status": (Task.status, "eq"),
        "priority": (Task.priority, "eq"),
        "assignee_id": (Task.assignee_id, "eq"),
        "contact_id": (Task.contact_id, "eq"),
        "company_id": (Task.company_id, "eq"),
        "deal_id": (Task.deal_id, "eq"),
        "due_after": (Task.due_date, "ge"),
        "due_before": (Task.due_date, "lt"),
    },
)


class TaskService(RecordService):
    """Completing a task stamps ``completed_at``; reopening clears it."""

    def prepare_create(self, session: Session, values: dict[str, Any], actor: uuid.UUID | None) -> dict[str, Any]:
        if values.get("status") == "done":
            values["completed_at"] = _now()
        return values

    def prepare_update(
        self, session: Session, record: Record, changes: dict[str, Any], actor: uuid.UUID | None
    ) -> dict[str, Any]:
        status = changes.get("status")
        if status == "done" and record.status != "done":
            changes["completed_at"] = _now()
        elif status is not None and status != "done":
            changes["completed_at"] = None
        return changes


class ActivityService(RecordService):
    def prepare_create(self, session: Session, values: dict[str, Any], actor: uuid.UUID | None) -> dict[str, Any]:
        if values.get("occurred_at") is None:
            values["occurred_at"] = _now()
        if values.get("owner_id") is None:
            values["owner_id"] = actor
        return values
