"""What a CSV import can write: the entity types, their schemas and columns, the columns that
name other records, and the other names a column may have."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import Table

from okyaku.crm import schemas as s
from okyaku.crm.import_report import IMPORT_ENTITY_TYPES
from okyaku.db.models import Activity, Base, Company, Contact, Deal
from okyaku.errors import ValidationFailed, field_error


@dataclass(frozen=True)
class Reference:
    """An import-only column that names another record; it fills the id field ``target``."""

    target: str
    entity: Literal["company", "contact", "deal", "user"]
    keys: tuple[str, ...]  # tried in order: a value matching none of them is an error


REFERENCES: dict[str, Reference] = {
    "company": Reference("company_id", "company", ("external_id", "name")),
    "company_external_id": Reference("company_id", "company", ("external_id",)),
    "company_name": Reference("company_id", "company", ("name",)),
    "contact": Reference("contact_id", "contact", ("external_id", "email")),
    "contact_external_id": Reference("contact_id", "contact", ("external_id",)),
    "contact_email": Reference("contact_id", "contact", ("email",)),
    "deal": Reference("deal_id", "deal", ("external_id", "name")),
    "deal_external_id": Reference("deal_id", "deal", ("external_id",)),
    "owner_email": Reference("owner_id", "user", ("email", "name")),
}
# Id columns a file may fill directly; ids another organization owns are invisible (RLS) and refused.
ID_FIELDS = {"owner_id": "user", "company_id": "company", "contact_id": "contact", "deal_id": "deal"}
DEAL_FIELDS = ("pipeline", "stage", "outcome")
# Columns the import sets itself, besides the schema's fields.
MANAGED_COLUMNS = frozenset({"id", "created_at", "updated_at", "stage_entered_at"})

# Other names a column may have (compared normalized: "E-mail" is "email"), per field.
COMMON_ALIASES = {
    "external_id": ("extid", "id", "record id", "import id", "source id"),
    "owner_email": ("owner",),
    "created_at": ("create date", "created date", "created on"),
}
COMPANY_REFERENCE_ALIASES = {"company": ("organization", "organisation", "account", "account name")}
ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "contact": COMPANY_REFERENCE_ALIASES
    | {
        "company": ("organization", "organisation", "account", "account name", "employer"),
        "first_name": ("first", "given name", "forename"),
        "last_name": ("last", "surname", "family name"),
        "email": ("mail", "email address"),
        "phone": ("phone number", "telephone", "tel", "mobile", "mobile phone"),
        "job_title": ("title", "position", "role"),
        "lifecycle_stage": ("lifecycle", "stage"),
        "lead_status": ("status",),
        "source": ("lead source", "origin", "channel"),
    },
    "company": {
        "name": ("company", "company name", "organization", "organisation", "account", "account name"),
        "domain": ("website", "url", "web", "company domain"),
        "employee_count": ("employees", "number of employees", "headcount"),
        "annual_revenue": ("revenue",),
        "industry": ("sector",),
        "city": ("town",),
        "description": ("about",),
    },
    "deal": COMPANY_REFERENCE_ALIASES
    | {
        "name": ("deal name", "deal", "title", "opportunity", "opportunity name"),
        "amount": ("value", "deal value", "deal amount"),
        "expected_close_date": ("close date", "expected close", "expected closing date"),
        "closed_at": ("closed date", "date closed", "closed on"),
        "lost_reason": ("reason lost", "closed lost reason"),
        "outcome": ("status", "result", "won/lost", "deal status"),
        "stage": ("deal stage", "stage name"),
        "pipeline": ("pipeline name",),
    },
    "activity": COMPANY_REFERENCE_ALIASES
    | {
        "type": ("activity type", "kind"),
        "subject": ("title",),
        "body": ("notes", "note", "description", "content", "text", "details"),
        "occurred_at": ("date", "datetime", "timestamp", "occurred", "when", "activity date"),
        "duration_minutes": ("duration", "minutes"),
        "deal": ("deal name",),
    },
}


def table_of(model: type[Base]) -> Table:
    table: Table = model.__table__  # type: ignore[assignment]
    return table


@dataclass(frozen=True)
class ImportTarget:
    entity_type: str
    model: type[Base]
    create_schema: type[BaseModel]
    update_schema: type[BaseModel]
    references: tuple[str, ...]
    extra_fields: tuple[str, ...] = ()
    owner_defaults_to_actor: bool = False

    @property
    def table(self) -> Table:
        return table_of(self.model)

    @cached_property
    def schema_fields(self) -> frozenset[str]:
        return frozenset(self.create_schema.model_fields) - {"custom_properties"}

    @cached_property
    def known_fields(self) -> frozenset[str]:
        return self.schema_fields | set(self.references) | set(self.extra_fields) | {"created_at"}

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """The columns an import writes on insert."""
        wanted = self.schema_fields | MANAGED_COLUMNS | {"custom_properties"}
        return tuple(c.key for c in self.table.c if c.key in wanted)

    @cached_property
    def update_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in ("id", "created_at", "updated_at", "external_id"))


TARGETS: dict[str, ImportTarget] = {
    "contact": ImportTarget(
        "contact",
        Contact,
        s.ContactCreate,
        s.ContactUpdate,
        ("company", "company_external_id", "company_name", "owner_email"),
    ),
    "company": ImportTarget("company", Company, s.CompanyCreate, s.CompanyUpdate, ("owner_email",)),
    "deal": ImportTarget(
        "deal",
        Deal,
        s.DealCreate,
        s.DealUpdate,
        (
            "company",
            "company_external_id",
            "company_name",
            "contact",
            "contact_external_id",
            "contact_email",
            "owner_email",
        ),
        extra_fields=DEAL_FIELDS,
        owner_defaults_to_actor=True,
    ),
    "activity": ImportTarget(
        "activity",
        Activity,
        s.ActivityCreate,
        s.ActivityUpdate,
        tuple(REFERENCES),
        owner_defaults_to_actor=True,
    ),
}


def target_for(entity_type: str) -> ImportTarget:
    target = TARGETS.get(entity_type)
    if target is None:
        raise ValidationFailed(
            f"cannot import {entity_type!r}",
            details=[field_error("entity_type", f"expected one of {', '.join(IMPORT_ENTITY_TYPES)}", "enum")],
        )
    return target
