"""CSV import of contacts, companies, deals and activities.

Each row is validated with the API's own schemas; rows are written in batches with set-based SQL,
and every created or changed record gets its change event in the outbox, in the same transaction.
A row whose ``external_id`` is already known updates that record (empty cells keep the stored
value); a row that would change nothing writes nothing: no new version, no event.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Table,
    Text,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Session

from okyaku.crm import schemas as s
from okyaku.crm.custom_properties import register_custom_properties
from okyaku.crm.import_report import IMPORT_ENTITY_TYPES as IMPORT_ENTITY_TYPES
from okyaku.crm.import_report import ImportEntity as ImportEntity
from okyaku.crm.import_report import ImportOptions as ImportOptions
from okyaku.crm.import_report import ImportReport as ImportReport
from okyaku.crm.import_report import ImportRowError as ImportRowError
from okyaku.crm.import_report import ImportStatus as ImportStatus
from okyaku.db import Database
from okyaku.db.models import (
    Activity,
    Base,
    Company,
    Contact,
    CustomPropertyDefinition,
    Deal,
    DealStageHistory,
    ImportJob,
    OutboxEvent,
    Pipeline,
    User,
)
from okyaku.errors import NotFound, ValidationFailed, field_error
from okyaku.events.model import ChangeEvent, Operation
from okyaku.events.outbox import publish_events
from okyaku.events.publishers import EventPublisher

BATCH_SIZE = 2000
LOOKUP_CHUNK = 5000  # values per "IN (...)" lookup, well under Postgres' 65535 parameters
MAX_STORED_ERRORS = 1000
# Above this many events, publishing is left to the scheduled relay (SQS takes 10 per call).
PUBLISH_INLINE_LIMIT = 1000
CATEGORY_MAX_DISTINCT = 20
DELIMITERS = (",", ";", "\t")
IGNORE = ("", "-", "ignore")
CUSTOM_PREFIXES = ("custom_properties.", "custom.")

Progress = Callable[[int, int], None]  # (rows done, rows in total)


# --- what can be imported ----------------------------------------------------------------------


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
LOOKUP_MODELS: dict[str, Any] = {"company": Company, "contact": Contact, "deal": Deal, "user": User}
# Id columns a file may fill directly; ids another organization owns are invisible (RLS) and refused.
ID_FIELDS = {"owner_id": "user", "company_id": "company", "contact_id": "contact", "deal_id": "deal"}
DEAL_FIELDS = ("pipeline", "stage", "outcome")
ENUM_FIELDS = frozenset({"lifecycle_stage", "lead_status", "type", "direction", "outcome"})
NUMBER_FIELDS = frozenset({"amount", "annual_revenue", "employee_count", "duration_minutes"})
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

    def resolve_header(self, header: str) -> str | None:
        key = normalize_header(header)
        for name in self.known_fields:
            if normalize_header(name) == key:
                return name
        for aliases in (ALIASES[self.entity_type], COMMON_ALIASES):
            for name, others in aliases.items():
                if name in self.known_fields and key in {normalize_header(o) for o in others}:
                    return name
        return None


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


# --- reading the file --------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedCsv:
    headers: list[str]
    rows: list[tuple[int, list[str]]]  # (row number, cells); the header is row 1
    delimiter: str


def decode_csv(data: bytes) -> str:
    """UTF-8 with or without a BOM (and UTF-16 with a BOM, as spreadsheets export it)."""
    try:
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValidationFailed(
            "the file is not valid UTF-8 text",
            details=[
                field_error(
                    "file",
                    f"undecodable byte 0x{data[error.start]:02x} at offset {error.start}; save it as UTF-8",
                    "encoding",
                )
            ],
        ) from error


def detect_delimiter(text: str) -> str:
    """The delimiter under which the first rows agree best with the header's field count."""
    sample = text[:65536]
    best: tuple[float, int, str] = (-1.0, 0, ",")
    for delimiter in DELIMITERS:
        counts: list[int] = []
        reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter)
        try:
            for row in reader:
                if row:
                    counts.append(len(row))
                if len(counts) > 50:
                    break
        except csv.Error:
            pass  # a record cut off by the sample's end
        if len(sample) < len(text) and len(counts) > 1:
            counts.pop()  # the last sampled row may be truncated
        if not counts:
            continue
        header = counts[0]
        body = counts[1:]
        agreement = sum(1 for c in body if c == header) / len(body) if body else 1.0
        score = (agreement if header > 1 else 0.0, header, delimiter)
        if score[:2] > best[:2]:
            best = score
    return best[2]


def parse_csv(data: bytes) -> ParsedCsv:
    text = decode_csv(data)
    delimiter = detect_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    headers: list[str] | None = None
    try:
        for number, cells in enumerate(reader, start=1):
            if headers is None:
                headers = [h.strip() for h in cells]
                continue
            if any(c.strip() for c in cells):
                rows.append((number, cells))
    except csv.Error as error:
        raise ValidationFailed(
            "the file is not valid CSV",
            details=[field_error("file", f"line {reader.line_num}: {error}", "csv")],
        ) from error
    if not headers or not any(headers):
        raise ValidationFailed(
            "the file has no header row", details=[field_error("file", "the first row must name the columns")]
        )
    seen: set[str] = set()
    duplicates = []
    for header in headers:
        if header and header in seen:
            duplicates.append(header)
        seen.add(header)
    if duplicates:
        raise ValidationFailed(
            "column names must be unique",
            details=[field_error("file", f"column {h!r} appears more than once", "duplicate") for h in duplicates],
        )
    return ParsedCsv(headers=headers, rows=rows, delimiter=delimiter)


def normalize_header(name: str) -> str:
    """Case, spaces, underscores and punctuation do not matter: "E-mail" == "email"."""
    return re.sub(r"[\W_]+", "", name.casefold())


def custom_property_name(header: str) -> str:
    return re.sub(r"\W+", "_", header.strip().casefold()).strip("_")


# --- which column goes where -------------------------------------------------------------------


@dataclass
class ColumnPlan:
    headers: list[str]
    fields: dict[int, str] = field(default_factory=dict)  # column index -> field
    custom: dict[int, str] = field(default_factory=dict)  # column index -> custom property
    ignored: list[int] = field(default_factory=list)

    def column_of(self, field_name: str) -> int | None:
        return next((i for i, f in self.fields.items() if f == field_name), None)

    def describe(self) -> dict[str, str]:
        described = {self.headers[i]: f for i, f in self.fields.items()}
        described |= {self.headers[i]: f"custom_properties.{n}" for i, n in self.custom.items()}
        described |= {self.headers[i]: "(ignored)" for i in self.ignored if self.headers[i]}
        return described


def _known_field(target: ImportTarget, wanted: str) -> str | None:
    key = normalize_header(wanted)
    return next((f for f in sorted(target.known_fields) if normalize_header(f) == key), None)


def plan_columns(target: ImportTarget, headers: Sequence[str], mapping: Mapping[str, str | None]) -> ColumnPlan:
    """Explicit mapping first, then known field names and aliases; the rest become custom properties."""
    plan = ColumnPlan(headers=list(headers))
    errors: list[dict[str, str]] = []
    by_header = {h: i for i, h in enumerate(headers)}
    by_normalized = {normalize_header(h): i for i, h in enumerate(headers)}
    explicit: dict[int, str | None] = {}
    for column, wanted in mapping.items():
        index = by_header.get(column)
        if index is None:
            index = by_normalized.get(normalize_header(column))
        if index is None:
            errors.append(field_error(f"mapping.{column}", "no such column in the file", "not_found"))
            continue
        wanted = (wanted or "").strip()
        if wanted.lower() in IGNORE:
            explicit[index] = None
        elif wanted.startswith(CUSTOM_PREFIXES):
            name = wanted.split(".", 1)[1].strip()
            if not name:
                errors.append(field_error(f"mapping.{column}", "name the custom property"))
            explicit[index] = "custom:" + name
        elif (known := _known_field(target, wanted)) is not None:
            explicit[index] = known
        else:
            errors.append(
                field_error(
                    f"mapping.{column}",
                    f"unknown {target.entity_type} field {wanted!r}; known fields: "
                    f"{', '.join(sorted(target.known_fields))}, or custom_properties.<name>",
                    "unknown_field",
                )
            )
    used_names: set[str] = set()
    for index, header in enumerate(headers):
        if index in explicit:
            destination = explicit[index]
        elif header:
            destination = target.resolve_header(header)
        else:
            plan.ignored.append(index)  # an unnamed column
            continue
        if index in explicit and destination is None:
            plan.ignored.append(index)
        elif destination is None or destination.startswith("custom:"):
            name = destination[len("custom:") :] if destination else custom_property_name(header)
            name = name or f"column_{index + 1}"
            base, suffix = name, 2
            while name in used_names:
                name, suffix = f"{base}_{suffix}", suffix + 1
            used_names.add(name)
            plan.custom[index] = name
        elif destination in plan.fields.values():
            other = headers[plan.column_of(destination) or 0]
            errors.append(
                field_error(
                    f"mapping.{header}",
                    f"columns {other!r} and {header!r} both map to {destination!r}; map one elsewhere",
                    "duplicate",
                )
            )
        else:
            plan.fields[index] = destination
    if errors:
        raise ValidationFailed("the column mapping is not valid", details=errors)
    return plan


# --- custom property values --------------------------------------------------------------------

BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False, "y": True, "n": False}
NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
INTEGER = re.compile(r"^[+-]?\d+$")
LEADING_ZERO = re.compile(r"^[+-]?0\d")  # "007", a postcode: text, not a number
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _is_iso_date(value: str) -> bool:
    if not ISO_DATE.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def infer_column_type(values: Iterable[str]) -> str | None:
    """number, boolean, date, category (few distinct, repeated values) or string; None if empty."""
    present = [v for v in values if v]
    if not present:
        return None
    distinct = set(present)
    if {v.lower() for v in distinct} <= BOOLEAN_WORDS.keys():
        return "boolean"
    if all(NUMBER.match(v) and not LEADING_ZERO.match(v) for v in distinct):
        return "number"
    if all(_is_iso_date(v) for v in distinct):
        return "date"
    if (
        len(distinct) <= CATEGORY_MAX_DISTINCT
        and len(distinct) * 2 <= len(present)
        and max(len(v) for v in distinct) <= 60
    ):
        return "category"
    return "string"


def convert_custom_value(data_type: str, value: str) -> str | int | float | bool:
    """A cell as the JSON value of its property's type; ValueError when it does not fit."""
    if data_type == "number":
        if not NUMBER.match(value):
            raise ValueError(f"expected a number, got {value!r}")
        if INTEGER.match(value):
            return int(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is out of range")
        return number
    if data_type == "boolean":
        word = value.lower()
        if word in BOOLEAN_WORDS:
            return BOOLEAN_WORDS[word]
        if word in ("1", "0"):
            return word == "1"
        raise ValueError(f"expected true/false or yes/no, got {value!r}")
    if data_type == "date":
        if not _is_iso_date(value):
            raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}")
        parsed = datetime.fromisoformat(value)
        return parsed.date().isoformat() if len(value) == 10 else parsed.isoformat()
    return value


# --- cells of known fields ---------------------------------------------------------------------

THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d{1,2}$")
_DATETIME = TypeAdapter(datetime)


def normalize_cell(field_name: str, value: str) -> str:
    if field_name in ENUM_FIELDS:
        return re.sub(r"[\s\-]+", "_", value.strip().lower())
    if field_name in NUMBER_FIELDS:
        value = re.sub(r"[\s$€£¥]", "", value)
        if THOUSANDS.match(value):
            return value.replace(",", "")
        if DECIMAL_COMMA.match(value):
            return value.replace(",", ".")
    return value


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _same(a: Any, b: Any) -> bool:
    if a != b:
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        # As JSON: True and 1 (or 1 and 1.0) are different custom property values.
        return all(type(value) is type(b[key]) for key, value in a.items())
    return True


def _any(column: ColumnElement[Any], values: Sequence[Any], item_type: Any = Text) -> ColumnElement[bool]:
    """``column = ANY(:array)``: one parameter that Postgres hashes, unlike an IN list of thousands."""
    return column == any_(bindparam(None, list(values), type_=ARRAY(item_type)))


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """``INSERT ... SELECT * FROM unnest(<one array per column>)``: one statement for the whole batch,
    about twice as fast as an executemany of single-row INSERTs (COPY is refused on RLS tables)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    quote = dialect.identifier_preparer.quote
    columns = list(rows[0])
    arrays: dict[str, list[Any]] = {}
    casts = []
    for position, name in enumerate(columns):
        column_type = table.c[name].type
        values = [row[name] for row in rows]
        if isinstance(column_type, JSONB):
            values = [None if v is None else json.dumps(v) for v in values]
        arrays[f"a{position}"] = values
        casts.append(f"CAST(:a{position} AS {column_type.compile(dialect=dialect)}[])")
    statement = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
        f"SELECT * FROM unnest({', '.join(casts)})"
    )
    session.execute(text(statement), arrays)


def _column_limits(table: Table, columns: Iterable[str]) -> list[tuple[str, str, int]]:
    """(column, "length" or "integer", limit): what the schemas let through but the column refuses."""
    limits = []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, String) and column_type.length:
            limits.append((name, "length", column_type.length))
        elif isinstance(column_type, Integer):
            limits.append((name, "integer", 2**31 - 1))
    return limits


# --- reference lookups -------------------------------------------------------------------------


class Lookups:
    """Ids of the records that reference columns name, loaded once per import, set-wise."""

    def __init__(self, organization_id: uuid.UUID) -> None:
        # Naming the organization (RLS filters by it anyway) lets Postgres use the per-organization indexes.
        self.organization_id = organization_id
        self.by_key: dict[tuple[str, str], dict[str, list[uuid.UUID]]] = {}
        self.visible: dict[str, set[uuid.UUID]] = {}

    def load(self, session: Session, entity: str, key: str, values: set[str]) -> None:
        model = LOOKUP_MODELS[entity]
        column = getattr(model, key)
        if key == "email":
            column = func.lower(column)
            values = {v.lower() for v in values}
        found = self.by_key.setdefault((entity, key), {})
        ordered = sorted(values)
        for start in range(0, len(ordered), LOOKUP_CHUNK):
            chunk = ordered[start : start + LOOKUP_CHUNK]
            statement = select(model.id, column).where(
                model.organization_id == self.organization_id, _any(column, chunk)
            )
            for record_id, value in session.execute(statement):
                found.setdefault(value, []).append(record_id)

    def load_ids(self, session: Session, entity: str, values: set[str]) -> None:
        model = LOOKUP_MODELS[entity]
        ids: list[uuid.UUID] = []
        for value in values:
            try:
                ids.append(uuid.UUID(value))
            except ValueError:
                continue  # the schema reports it
        visible = self.visible.setdefault(entity, set())
        for start in range(0, len(ids), LOOKUP_CHUNK):
            chunk = ids[start : start + LOOKUP_CHUNK]
            visible.update(session.scalars(select(model.id).where(_any(model.id, chunk, UUID(as_uuid=True)))))

    def resolve(self, reference: Reference, value: str) -> uuid.UUID:
        for key in reference.keys:
            lookup_value = value.lower() if key == "email" else value
            matches = self.by_key.get((reference.entity, key), {}).get(lookup_value, [])
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise LookupError(f"{len(matches)} {reference.entity} records have {key} {value!r}; use an external id")
        keys = " or ".join(reference.keys).replace("_", " ")
        raise LookupError(f"no {reference.entity} with {keys} {value!r}")


@dataclass(frozen=True)
class StageInfo:
    id: uuid.UUID
    name: str
    position: int
    is_won: bool
    is_lost: bool

    @property
    def closing(self) -> bool:
        return self.is_won or self.is_lost


@dataclass(frozen=True)
class PipelineInfo:
    id: uuid.UUID
    name: str
    external_id: str | None
    stages: tuple[StageInfo, ...]

    def stage_named(self, name: str) -> StageInfo | None:
        wanted = name.casefold()
        return next((st for st in self.stages if st.name.casefold() == wanted or str(st.id) == name), None)


def load_pipelines(session: Session) -> list[PipelineInfo]:
    """Every pipeline, the default one first."""
    pipelines = session.scalars(select(Pipeline).order_by(Pipeline.is_default.desc(), Pipeline.created_at))
    return [
        PipelineInfo(
            id=p.id,
            name=p.name,
            external_id=p.external_id,
            stages=tuple(
                StageInfo(st.id, st.name, st.position, st.is_won, st.is_lost)
                for st in sorted(p.stages, key=lambda st: st.position)
            ),
        )
        for p in pipelines
    ]


# --- the import itself -------------------------------------------------------------------------


class _RowInvalid(Exception):
    def __init__(self, errors: list[ImportRowError]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


@dataclass
class _Outcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[ImportRowError] = field(default_factory=list)
    error_count: int = 0
    events: list[ChangeEvent] = field(default_factory=list)
    custom_types: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def reject(self, errors: Sequence[ImportRowError]) -> None:
        self.failed += 1
        self.error_count += len(errors)
        room = MAX_STORED_ERRORS - len(self.errors)
        self.errors.extend(errors[: max(room, 0)])


class _Importer:
    def __init__(
        self,
        session: Session,
        organization_id: uuid.UUID,
        target: ImportTarget,
        parsed: ParsedCsv,
        plan: ColumnPlan,
        options: ImportOptions,
    ) -> None:
        self.session = session
        self.organization_id = organization_id
        self.target = target
        self.parsed = parsed
        self.plan = plan
        self.options = options
        self.table = target.table
        self.limits = _column_limits(self.table, target.columns)
        self.lookups = Lookups(organization_id)
        self.pipelines: list[PipelineInfo] = []
        self.outcome = _Outcome()
        self.now = datetime.now(UTC)
        self.external_id_column = plan.column_of("external_id")

    # -- preparation over the whole file --

    def run(self, progress: Progress | None) -> _Outcome:
        rows = self.parsed.rows
        self._infer_custom_types()
        self._load_references()
        if self.target.entity_type == "deal" and rows:
            self.pipelines = load_pipelines(self.session)
            if not self.pipelines:
                raise ValidationFailed(
                    "there is no pipeline yet: create one (POST /api/v1/pipelines) before importing deals",
                    details=[field_error("pipeline", "create a pipeline first", "missing")],
                )
        if self.external_id_column is None and rows:
            self.outcome.warnings.append(
                "no external_id column: importing this file again will create the records again"
            )
        rows = self._drop_malformed(rows)
        if progress is not None:
            progress(0, len(self.parsed.rows))
        done = len(self.parsed.rows) - len(rows)
        for start in range(0, len(rows), BATCH_SIZE):
            batch = rows[start : start + BATCH_SIZE]
            self._import_batch(batch)
            done += len(batch)
            if progress is not None:
                progress(done, len(self.parsed.rows))
        if not self.options.dry_run and self.outcome.custom_types:
            register_custom_properties(
                self.session,
                self.target.entity_type,
                {name: "" for name in self.outcome.custom_types},
                types=self.outcome.custom_types,
            )
        return self.outcome

    def _cells(self, index: int) -> Iterable[str]:
        width = len(self.plan.headers)
        return (cells[index].strip() for _, cells in self.parsed.rows if len(cells) == width)

    def _infer_custom_types(self) -> None:
        definitions = self.session.execute(
            select(CustomPropertyDefinition.name, CustomPropertyDefinition.data_type).where(
                CustomPropertyDefinition.entity_type == self.target.entity_type
            )
        )
        existing = {name: data_type for name, data_type in definitions}
        for index, name in self.plan.custom.items():
            # A property already known keeps its type: values must fit it.
            data_type = existing.get(name) or infer_column_type(self._cells(index))
            if data_type is not None:
                self.outcome.custom_types[name] = data_type

    def _load_references(self) -> None:
        for index, field_name in self.plan.fields.items():
            values = {v for v in self._cells(index) if v}
            if not values:
                continue
            reference = REFERENCES.get(field_name)
            if reference is not None:
                for key in reference.keys:
                    self.lookups.load(self.session, reference.entity, key, values)
            elif field_name in ID_FIELDS:
                self.lookups.load_ids(self.session, ID_FIELDS[field_name], values)

    def _drop_malformed(self, rows: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
        """Rows with the wrong number of fields, and repeated external ids (the first one wins)."""
        width = len(self.plan.headers)
        first_row_of: dict[str, int] = {}
        kept = []
        for number, cells in rows:
            if len(cells) != width:
                self.outcome.reject(
                    [self._error(number, None, "row", f"has {len(cells)} fields; the header has {width}")]
                )
                continue
            if self.external_id_column is not None:
                external_id = cells[self.external_id_column].strip()
                if external_id in first_row_of:
                    self.outcome.reject(
                        [
                            self._error(
                                number,
                                self.external_id_column,
                                "external_id",
                                f"{external_id!r} already appears in row {first_row_of[external_id]}",
                            )
                        ]
                    )
                    continue
                if external_id:
                    first_row_of[external_id] = number
            kept.append((number, cells))
        return kept

    def _error(self, row: int, column: int | None, field_name: str, message: str) -> ImportRowError:
        header = self.plan.headers[column] if column is not None else None
        return ImportRowError(row=row, column=header, field=field_name, message=message)

    # -- one batch --

    def _import_batch(self, batch: list[tuple[int, list[str]]]) -> None:
        current_by_external_id = self._current_records(batch)
        creates: list[dict[str, Any]] = []
        updates: list[tuple[dict[str, Any], dict[str, Any], list[str]]] = []
        for number, cells in batch:
            external_id = cells[self.external_id_column].strip() if self.external_id_column is not None else ""
            current = current_by_external_id.get(external_id) if external_id else None
            try:
                values = self._row_values(number, cells, current)
            except _RowInvalid as invalid:
                self.outcome.reject(invalid.errors)
                continue
            if current is None:
                creates.append(values)
                continue
            changed = [c for c in self.target.update_columns if not _same(values[c], current[c])]
            if changed:
                updates.append((current, values, changed))
            else:
                self.outcome.unchanged += 1
        self.outcome.created += len(creates)
        self.outcome.updated += len(updates)
        if not self.options.dry_run:
            self._write(creates, updates)

    def _current_records(self, batch: list[tuple[int, list[str]]]) -> dict[str, dict[str, Any]]:
        if self.external_id_column is None:
            return {}
        index = self.external_id_column
        external_ids = sorted({cells[index].strip() for _, cells in batch} - {""})
        if not external_ids:
            return {}
        columns = [self.table.c[c] for c in (*self.target.columns, "version")]
        statement = select(*columns, literal_column("ctid::text").label("ctid")).where(
            self.table.c.organization_id == self.organization_id, _any(self.table.c.external_id, external_ids)
        )
        if not self.options.dry_run:
            statement = statement.with_for_update()  # no one changes them between read and write
        return {row["external_id"]: dict(row) for row in self.session.execute(statement).mappings()}

    def _row_values(self, number: int, cells: list[str], current: dict[str, Any] | None) -> dict[str, Any]:
        """The record's complete column values after this row, or _RowInvalid."""
        errors: list[ImportRowError] = []
        data: dict[str, Any] = {}
        extras: dict[str, str] = {}
        for index, field_name in self.plan.fields.items():
            cell = cells[index].strip()
            if not cell:
                continue  # an empty cell keeps what is stored
            if "\x00" in cell:
                errors.append(self._error(number, index, field_name, "contains a NUL character"))
            elif field_name in REFERENCES:
                try:
                    resolved = self.lookups.resolve(REFERENCES[field_name], cell)
                except LookupError as error:
                    errors.append(self._error(number, index, field_name, str(error)))
                    continue
                target_field = REFERENCES[field_name].target
                if str(data.get(target_field, resolved)) != str(resolved):
                    errors.append(self._error(number, index, field_name, f"names another record than {target_field}"))
                data[target_field] = resolved
            elif field_name in DEAL_FIELDS or field_name == "created_at":
                extras[field_name] = normalize_cell(field_name, cell)
            else:
                value = normalize_cell(field_name, cell)
                entity = ID_FIELDS.get(field_name)
                if entity is not None and self._invisible(entity, value):
                    errors.append(self._error(number, index, field_name, f"no {entity} with id {value}"))
                data.setdefault(field_name, value)
        custom: dict[str, Any] = {}
        for index, name in self.plan.custom.items():
            cell = cells[index].strip()
            if not cell or name not in self.outcome.custom_types:
                continue
            try:
                custom[name] = convert_custom_value(self.outcome.custom_types[name], cell)
            except ValueError as error:
                errors.append(self._error(number, index, f"custom_properties.{name}", str(error)))
        if custom:
            data["custom_properties"] = custom
        stage = self._resolve_deal_stage(number, data, extras, current, errors) if self.pipelines else None
        created_at = None
        if "created_at" in extras:
            try:
                created_at = _utc(_DATETIME.validate_python(extras["created_at"]))
            except ValidationError:
                column = self.plan.column_of("created_at")
                errors.append(self._error(number, column, "created_at", "expected a date or date-time (ISO 8601)"))
        if errors:
            raise _RowInvalid(errors)
        schema = self.target.create_schema if current is None else self.target.update_schema
        try:
            model = schema.model_validate(data)
        except ValidationError as error:
            raise _RowInvalid([self._schema_error(number, e) for e in error.errors()]) from error
        provided = {k: _utc(v) for k, v in model.model_dump().items() if k in model.model_fields_set}
        values = self._create_values(model, created_at, stage) if current is None else self._merge(current, provided)
        if current is not None and stage is not None:
            self._restage(current, values, provided, stage)
        self._check_limits(number, values)
        return values

    def _invisible(self, entity: str, value: str) -> bool:
        try:
            return uuid.UUID(value) not in self.lookups.visible.get(entity, set())
        except ValueError:
            return False  # not a UUID: the schema says so

    def _schema_error(self, number: int, error: Any) -> ImportRowError:
        location = [str(part) for part in error.get("loc", ())]
        field_name = ".".join(location) or "row"
        column = self.plan.column_of(location[0]) if location else None
        if column is None and location:
            column = next(
                (i for i, f in self.plan.fields.items() if f in REFERENCES and REFERENCES[f].target == location[0]),
                None,
            )
        return self._error(number, column, field_name, str(error.get("msg", "invalid")))

    def _check_limits(self, number: int, values: Mapping[str, Any]) -> None:
        errors = []
        for name, kind, limit in self.limits:
            value = values[name]
            if kind == "length" and isinstance(value, str) and len(value) > limit:
                errors.append(self._error(number, self.plan.column_of(name), name, f"at most {limit} characters"))
            elif kind == "integer" and isinstance(value, int) and abs(value) > limit:
                errors.append(self._error(number, self.plan.column_of(name), name, "the number is too large"))
        if errors:
            raise _RowInvalid(errors)

    def _create_values(self, model: BaseModel, created_at: datetime | None, stage: StageInfo | None) -> dict[str, Any]:
        dumped = {k: _utc(v) for k, v in model.model_dump().items()}
        values: dict[str, Any] = {c: dumped.get(c) for c in self.target.columns}
        values["id"] = uuid.uuid4()
        values["created_at"] = created_at or self.now
        values["updated_at"] = self.now
        if self.target.owner_defaults_to_actor and values.get("owner_id") is None:
            values["owner_id"] = self.options.actor
        if self.target.entity_type == "activity" and values.get("occurred_at") is None:
            values["occurred_at"] = self.now
        if stage is not None:  # a deal: the same rules as DealService
            values["currency"] = values.get("currency") or "USD"
            if stage.closing and values.get("closed_at") is None:
                values["closed_at"] = self.now
            values["stage_entered_at"] = values["closed_at"] if stage.closing else values["created_at"]
        return values

    def _merge(self, current: Mapping[str, Any], provided: Mapping[str, Any]) -> dict[str, Any]:
        values = {c: current[c] for c in self.target.columns}
        for name, value in provided.items():
            if name == "custom_properties":
                values[name] = {**current[name], **(value or {})}
            elif name in values and value is not None:
                values[name] = value
        return values

    def _restage(
        self,
        current: Mapping[str, Any],
        values: dict[str, Any],
        provided: Mapping[str, Any],
        stage: StageInfo,
    ) -> None:
        """A deal moved to another stage: entered now (or when it closed); open stages have no close date."""
        if stage.id == current["stage_id"]:
            return
        if stage.closing:
            values["closed_at"] = provided.get("closed_at") or self.now
            values["stage_entered_at"] = values["closed_at"]
        else:
            values["closed_at"] = None
            values["stage_entered_at"] = self.now

    def _resolve_deal_stage(
        self,
        number: int,
        data: dict[str, Any],
        extras: Mapping[str, str],
        current: Mapping[str, Any] | None,
        errors: list[ImportRowError],
    ) -> StageInfo | None:
        """Pipeline and stage from names, ids or the outcome (won/lost/open); defaults like the API."""
        pipeline: PipelineInfo | None
        if "pipeline" in extras or "pipeline_id" in data:
            name = extras.get("pipeline") or str(data.get("pipeline_id"))
            field_name = "pipeline" if "pipeline" in extras else "pipeline_id"
            pipeline = next((p for p in self.pipelines if name in (p.external_id, str(p.id))), None) or next(
                (p for p in self.pipelines if p.name.casefold() == name.casefold()), None
            )
            if pipeline is None:
                errors.append(self._error(number, self.plan.column_of(field_name), field_name, f"no pipeline {name!r}"))
                return None
        elif current is not None:
            pipeline = next(p for p in self.pipelines if p.id == current["pipeline_id"])
        else:
            pipeline = self.pipelines[0]
        stage: StageInfo | None = None
        if "stage" in extras or "stage_id" in data:
            name = extras.get("stage") or str(data.get("stage_id"))
            field_name = "stage" if "stage" in extras else "stage_id"
            stage = pipeline.stage_named(name)
            if stage is None:
                errors.append(
                    self._error(
                        number,
                        self.plan.column_of(field_name),
                        field_name,
                        f"pipeline {pipeline.name!r} has no stage {name!r}",
                    )
                )
                return None
        outcome = extras.get("outcome")
        if outcome is not None:
            outcome = {"closed_won": "won", "closed_lost": "lost"}.get(outcome, outcome)
            column = self.plan.column_of("outcome")
            if outcome not in ("won", "lost", "open"):
                errors.append(self._error(number, column, "outcome", f"expected won, lost or open, not {outcome!r}"))
                return None
            matches: Callable[[StageInfo], bool] = {
                "won": lambda st: st.is_won,
                "lost": lambda st: st.is_lost,
                "open": lambda st: not st.closing,
            }[outcome]
            if stage is not None and not matches(stage):
                errors.append(self._error(number, column, "outcome", f"stage {stage.name!r} is not {outcome}"))
                return None
            if stage is None:
                kept = next((st for st in pipeline.stages if current and st.id == current["stage_id"]), None)
                stage = kept if kept and matches(kept) else next(filter(matches, pipeline.stages), None)
                if stage is None:
                    errors.append(
                        self._error(number, column, "outcome", f"pipeline {pipeline.name!r} has no {outcome} stage")
                    )
                    return None
        if stage is None:
            kept = next((st for st in pipeline.stages if current and st.id == current["stage_id"]), None)
            stage = kept or pipeline.stages[0]
        data["pipeline_id"] = pipeline.id
        data["stage_id"] = stage.id
        return stage

    # -- writes --

    def _write(
        self, creates: list[dict[str, Any]], updates: list[tuple[dict[str, Any], dict[str, Any], list[str]]]
    ) -> None:
        session, table = self.session, self.table
        events: list[ChangeEvent] = []
        if creates:
            insert_rows(session, table, creates)
            for values in creates:
                fields = [c for c, v in values.items() if v not in (None, {}) and c not in MANAGED_COLUMNS]
                events.append(self._event(values["id"], "created", 1, fields))
        if updates:
            columns = self.target.update_columns
            # By the row's physical address, locked since it was read: a new organization is not yet
            # in the planner's statistics, which then prefers the organization index over the key.
            statement = (
                update(table)
                .where(text("ctid = CAST(:p_ctid AS tid)"), table.c.id == bindparam("p_id"))
                .values(
                    {c: bindparam(f"p_{c}", type_=table.c[c].type) for c in columns}
                    | {
                        "version": table.c.version + 1,
                        "updated_at": bindparam("p_updated_at", type_=table.c.updated_at.type),
                    }
                )
            )
            params = [
                {"p_id": current["id"], "p_ctid": current["ctid"], "p_updated_at": self.now}
                | {f"p_{c}": values[c] for c in columns}
                for current, values, _changed in updates
            ]
            session.execute(statement, params)
            for current, _values, changed in updates:
                events.append(self._event(current["id"], "updated", current["version"] + 1, changed))
        if self.target.entity_type == "deal":
            self._write_stage_history(creates, updates)
        outbox_rows = [
            {
                "event_id": e.event_id,
                "entity_type": e.entity_type,
                "entity_id": e.entity_id,
                "operation": e.operation,
                "changed_fields": e.changed_fields,
                "entity_version": e.version,
                "occurred_at": e.occurred_at,
            }
            for e in events
        ]
        insert_rows(session, table_of(OutboxEvent), outbox_rows)
        self.outcome.events.extend(events)

    def _event(self, entity_id: uuid.UUID, operation: Operation, version: int, fields: list[str]) -> ChangeEvent:
        return ChangeEvent(
            event_id=uuid.uuid4(),
            organization_id=self.organization_id,
            entity_type=self.target.entity_type,
            entity_id=entity_id,
            operation=operation,
            changed_fields=sorted(fields),
            version=version,
            occurred_at=self.now,
        )

    def _write_stage_history(
        self, creates: list[dict[str, Any]], updates: list[tuple[dict[str, Any], dict[str, Any], list[str]]]
    ) -> None:
        history = [
            {
                "deal_id": values["id"],
                "from_stage_id": None,
                "to_stage_id": values["stage_id"],
                "changed_at": values["stage_entered_at"],
                "changed_by": self.options.actor,
            }
            for values in creates
        ] + [
            {
                "deal_id": current["id"],
                "from_stage_id": current["stage_id"],
                "to_stage_id": values["stage_id"],
                "changed_at": values["stage_entered_at"],
                "changed_by": self.options.actor,
            }
            for current, values, changed in updates
            if "stage_id" in changed
        ]
        if history:
            insert_rows(self.session, table_of(DealStageHistory), history)


# --- jobs --------------------------------------------------------------------------------------


def run_import(
    db: Database,
    organization_id: uuid.UUID,
    data: bytes,
    options: ImportOptions,
    *,
    publisher: EventPublisher | None = None,
    progress: Progress | None = None,
    errors_limit: int = 100,
    publish_inline_limit: int = PUBLISH_INLINE_LIMIT,
) -> ImportReport:
    """Import ``data`` (CSV bytes) into one organization and record the run as an import job.

    The rows are written in one transaction with their outbox events; the events are published
    after commit (or, for large imports, left to the relay).
    """
    target = target_for(options.entity_type)
    parsed = parse_csv(data)
    plan = plan_columns(target, parsed.headers, options.mapping)
    job_options = {
        "mapping": dict(options.mapping),
        "dry_run": options.dry_run,
        "delimiter": parsed.delimiter,
        "columns": plan.describe(),
    }
    with db.organization_scope(organization_id) as session:
        job = ImportJob(
            entity_type=target.entity_type,
            filename=options.filename,
            status="running",
            total_rows=len(parsed.rows),
            options=job_options,
        )
        session.add(job)
        session.flush()
        job_id = job.id
    try:
        with db.organization_scope(organization_id) as session:
            outcome = _Importer(session, organization_id, target, parsed, plan, options).run(progress)
            _finish_job(session, job_id, outcome, job_options, dry_run=options.dry_run)
    except Exception as error:
        _record_failure(db, organization_id, job_id, error)
        raise
    if publisher is not None and outcome.events and len(outcome.events) <= publish_inline_limit:
        publish_events(db, organization_id, publisher, outcome.events)
    return get_import(db, organization_id, job_id, errors_limit=errors_limit)


def _finish_job(
    session: Session, job_id: uuid.UUID, outcome: _Outcome, job_options: dict[str, Any], *, dry_run: bool
) -> None:
    session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id)
        .values(
            status="dry_run" if dry_run else "completed",
            created_count=outcome.created,
            updated_count=outcome.updated,
            error_count=outcome.failed,
            errors=[e.model_dump() for e in outcome.errors],
            options=job_options
            | {
                "unchanged_count": outcome.unchanged,
                "error_total": outcome.error_count,
                "custom_properties": outcome.custom_types,
                "warnings": outcome.warnings,
            },
            finished_at=func.now(),
        )
    )


def _record_failure(db: Database, organization_id: uuid.UUID, job_id: uuid.UUID, error: Exception) -> None:
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    with db.organization_scope(organization_id) as session:
        job = session.get(ImportJob, job_id)
        if job is not None:
            job.status = "failed"
            job.options = job.options | {"failure": message[:2000], "failure_details": _jsonable(error)}
            job.finished_at = datetime.now(UTC)


def _jsonable(error: Exception) -> Any:
    details = getattr(error, "details", None)
    try:
        json.dumps(details)
    except (TypeError, ValueError):
        return str(details)
    return details


def get_import(db: Database, organization_id: uuid.UUID, job_id: uuid.UUID, *, errors_limit: int = 100) -> ImportReport:
    with db.organization_scope(organization_id) as session:
        job = session.get(ImportJob, job_id)
        if job is None:
            raise NotFound(f"import {job_id} not found", details={"id": str(job_id)})
        return report_of(job, errors_limit=errors_limit)


def report_of(job: ImportJob, *, errors_limit: int = 100) -> ImportReport:
    opts = job.options or {}
    unchanged = int(opts.get("unchanged_count", 0))
    return ImportReport(
        id=job.id,
        entity_type=job.entity_type,
        filename=job.filename,
        status=job.status,
        dry_run=bool(opts.get("dry_run", False)),
        total_rows=job.total_rows,
        created=job.created_count,
        updated=job.updated_count,
        unchanged=unchanged,
        failed=job.error_count,
        error_count=int(opts.get("error_total", len(job.errors))),
        errors=[ImportRowError.model_validate(e) for e in job.errors[:errors_limit]],
        columns=opts.get("columns", {}),
        custom_properties=opts.get("custom_properties", {}),
        delimiter=opts.get("delimiter"),
        warnings=opts.get("warnings", []),
        failure=opts.get("failure"),
        created_at=job.created_at,
        finished_at=job.finished_at,
    )
