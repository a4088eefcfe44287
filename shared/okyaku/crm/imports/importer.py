"""The import of one parsed file: each row validated with the API's own schemas, matched to the
record its external id names, and written in batches (see ``writes``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy import literal_column, select
from sqlalchemy.orm import Session

from okyaku.crm.custom_properties import register_custom_properties
from okyaku.crm.import_report import ImportOptions, ImportRowError
from okyaku.crm.imports.catalogue import DEAL_FIELDS, ID_FIELDS, REFERENCES, ImportTarget
from okyaku.crm.imports.columns import ColumnPlan
from okyaku.crm.imports.csv_reader import ParsedCsv
from okyaku.crm.imports.deal_stages import DealStages, StageInfo, load_pipelines
from okyaku.crm.imports.lookups import Lookups, NoMatch
from okyaku.crm.imports.new_companies import CREATING_FIELDS, CannotCreate, NewCompanies
from okyaku.crm.imports.sql import any_of, column_limits
from okyaku.crm.imports.values import as_utc, convert_custom_value, infer_column_type, normalize_cell, same_value
from okyaku.crm.imports.writes import BatchWriter, Update
from okyaku.db.models import CustomPropertyDefinition
from okyaku.errors import ValidationFailed, field_error
from okyaku.events.model import ChangeEvent

BATCH_SIZE = 2000
MAX_STORED_ERRORS = 1000
Progress = Callable[[int, int], None]  # (rows done, rows in total)
_DATETIME = TypeAdapter(datetime)


class RowInvalid(Exception):
    """A row that cannot be imported, with every error found in it."""

    def __init__(self, errors: list[ImportRowError]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


@dataclass
class ImportOutcome:
    """What an import did, counted as it goes."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[ImportRowError] = field(default_factory=list)
    error_count: int = 0
    events: list[ChangeEvent] = field(default_factory=list)
    custom_types: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    companies_created: int = 0
    new_company_names: list[str] = field(default_factory=list)

    def reject(self, errors: Sequence[ImportRowError]) -> None:
        self.failed += 1
        self.error_count += len(errors)
        room = MAX_STORED_ERRORS - len(self.errors)
        self.errors.extend(errors[: max(room, 0)])


class Importer:
    """Imports one parsed file into one organization, in the caller's transaction."""

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
        self.limits = column_limits(self.table, target.columns)
        self.lookups = Lookups(organization_id)
        self.deal_stages: DealStages | None = None  # for deals, once the pipelines are loaded
        self.outcome = ImportOutcome()
        self.now = datetime.now(UTC)
        self.writer = BatchWriter(session, target, organization_id, options.actor, self.now)
        self.external_id_column = plan.column_of("external_id")
        creating = options.create_companies and any(f in CREATING_FIELDS for f in plan.fields.values())
        self.new_companies = NewCompanies(organization_id, self.lookups) if creating else None
        self._row_companies: list[str] = []  # the companies to create that the current row needs

    # -- preparation over the whole file --

    def run(self, progress: Progress | None) -> ImportOutcome:
        rows = self.parsed.rows
        self._infer_custom_types()
        self._load_references()
        if self.target.entity_type == "deal" and rows:
            pipelines = load_pipelines(self.session)
            if not pipelines:
                raise ValidationFailed(
                    "there is no pipeline yet: create one (POST /api/v1/pipelines) before importing deals",
                    details=[field_error("pipeline", "create a pipeline first", "missing")],
                )
            self.deal_stages = DealStages(pipelines, self.plan, self.now)
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
        if self.new_companies is not None:
            named = set()
            for index, field_name in self.plan.fields.items():
                if field_name in CREATING_FIELDS:
                    named |= {v for v in self._cells(index) if v and not self._known_company(field_name, v)}
            self.new_companies.prepare(self.session, named, lock=not self.options.dry_run)

    def _known_company(self, field_name: str, value: str) -> bool:
        try:
            self.lookups.resolve(REFERENCES[field_name], value)
        except NoMatch:
            return False
        except LookupError:
            return True  # several match: the row's error says so
        return True

    def _drop_malformed(self, rows: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
        """Rows with the wrong number of fields, and repeated external ids (the first one wins)."""
        width = len(self.plan.headers)
        first_row_of: dict[str, int] = {}
        kept = []
        for number, cells in rows:
            if len(cells) != width:
                self.outcome.reject(
                    [self.plan.error(number, None, "row", f"has {len(cells)} fields; the header has {width}")]
                )
                continue
            if self.external_id_column is not None:
                external_id = cells[self.external_id_column].strip()
                if external_id in first_row_of:
                    self.outcome.reject(
                        [
                            self.plan.error(
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

    # -- one batch --

    def _import_batch(self, batch: list[tuple[int, list[str]]]) -> None:
        current_by_external_id = self._current_records(batch)
        creates: list[dict[str, Any]] = []
        updates: list[Update] = []
        new_companies: list[str] = []
        for number, cells in batch:
            external_id = cells[self.external_id_column].strip() if self.external_id_column is not None else ""
            current = current_by_external_id.get(external_id) if external_id else None
            try:
                values = self._row_values(number, cells, current)
            except RowInvalid as invalid:
                self.outcome.reject(invalid.errors)
                continue
            new_companies.extend(self._row_companies)
            if current is None:
                creates.append(values)
                continue
            changed = [c for c in self.target.update_columns if not same_value(values[c], current[c])]
            if changed:
                updates.append((current, values, changed))
            else:
                self.outcome.unchanged += 1
        self.outcome.created += len(creates)
        self.outcome.updated += len(updates)
        companies = self.new_companies.take(new_companies) if self.new_companies is not None else []
        self.outcome.companies_created += len(companies)
        self.outcome.new_company_names.extend(c.name for c in companies)
        if not self.options.dry_run:
            if self.new_companies is not None:  # before the rows that name them
                events = self.new_companies.write(self.session, companies, self.options.actor, self.now)
                self.outcome.events.extend(events)
            self.outcome.events.extend(self.writer.write(creates, updates))

    def _current_records(self, batch: list[tuple[int, list[str]]]) -> dict[str, dict[str, Any]]:
        if self.external_id_column is None:
            return {}
        index = self.external_id_column
        external_ids = sorted({cells[index].strip() for _, cells in batch} - {""})
        if not external_ids:
            return {}
        columns = [self.table.c[c] for c in (*self.target.columns, "version")]
        statement = select(*columns, literal_column("ctid::text").label("ctid")).where(
            self.table.c.organization_id == self.organization_id, any_of(self.table.c.external_id, external_ids)
        )
        if not self.options.dry_run:
            statement = statement.with_for_update()  # no one changes them between read and write
        return {row["external_id"]: dict(row) for row in self.session.execute(statement).mappings()}

    def _row_values(self, number: int, cells: list[str], current: dict[str, Any] | None) -> dict[str, Any]:
        """The record's complete column values after this row, or RowInvalid."""
        errors: list[ImportRowError] = []
        data: dict[str, Any] = {}
        extras: dict[str, str] = {}
        self._row_companies = []
        for index, field_name in self.plan.fields.items():
            cell = cells[index].strip()
            if not cell:
                continue  # an empty cell keeps what is stored
            if "\x00" in cell:
                errors.append(self.plan.error(number, index, field_name, "contains a NUL character"))
            elif field_name in REFERENCES:
                try:
                    resolved = self._resolve(field_name, cell)
                except LookupError as error:
                    errors.append(self.plan.error(number, index, field_name, str(error)))
                    continue
                target_field = REFERENCES[field_name].target
                if str(data.get(target_field, resolved)) != str(resolved):
                    errors.append(
                        self.plan.error(number, index, field_name, f"names another record than {target_field}")
                    )
                data[target_field] = resolved
            elif field_name in DEAL_FIELDS or field_name == "created_at":
                extras[field_name] = normalize_cell(field_name, cell)
            else:
                value = normalize_cell(field_name, cell)
                entity = ID_FIELDS.get(field_name)
                if entity is not None and self._invisible(entity, value):
                    errors.append(self.plan.error(number, index, field_name, f"no {entity} with id {value}"))
                data.setdefault(field_name, value)
        custom: dict[str, Any] = {}
        for index, name in self.plan.custom.items():
            cell = cells[index].strip()
            if not cell or name not in self.outcome.custom_types:
                continue
            try:
                custom[name] = convert_custom_value(self.outcome.custom_types[name], cell)
            except ValueError as error:
                errors.append(self.plan.error(number, index, f"custom_properties.{name}", str(error)))
        if custom:
            data["custom_properties"] = custom
        stage = self.deal_stages.resolve(number, data, extras, current, errors) if self.deal_stages else None
        created_at = None
        if "created_at" in extras:
            try:
                created_at = as_utc(_DATETIME.validate_python(extras["created_at"]))
            except ValidationError:
                column = self.plan.column_of("created_at")
                errors.append(self.plan.error(number, column, "created_at", "expected a date or date-time (ISO 8601)"))
        if errors:
            raise RowInvalid(errors)
        schema = self.target.create_schema if current is None else self.target.update_schema
        try:
            model = schema.model_validate(data)
        except ValidationError as error:
            raise RowInvalid([self._schema_error(number, e) for e in error.errors()]) from error
        provided = {k: as_utc(v) for k, v in model.model_dump().items() if k in model.model_fields_set}
        values = self._create_values(model, created_at, stage) if current is None else self._merge(current, provided)
        if current is not None and stage is not None and self.deal_stages is not None:
            self.deal_stages.restage(current, values, provided, stage)
        self._check_limits(number, values)
        return values

    def _resolve(self, field_name: str, cell: str) -> uuid.UUID:
        """The id a reference cell names; with create_companies, a company named by a name no
        company has is matched ignoring case and spacing, else is one this import creates."""
        try:
            return self.lookups.resolve(REFERENCES[field_name], cell)
        except NoMatch:
            if self.new_companies is None or field_name not in CREATING_FIELDS:
                raise
        try:
            company_id, to_create = self.new_companies.resolve(cell)
        except CannotCreate as error:
            raise LookupError(str(error)) from error
        if to_create is not None:
            self._row_companies.append(to_create)
        return company_id

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
        return self.plan.error(number, column, field_name, str(error.get("msg", "invalid")))

    def _check_limits(self, number: int, values: Mapping[str, Any]) -> None:
        errors = []
        for name, kind, limit in self.limits:
            value = values[name]
            if kind == "length" and isinstance(value, str) and len(value) > limit:
                errors.append(self.plan.error(number, self.plan.column_of(name), name, f"at most {limit} characters"))
            elif kind == "integer" and isinstance(value, int) and abs(value) > limit:
                errors.append(self.plan.error(number, self.plan.column_of(name), name, "the number is too large"))
        if errors:
            raise RowInvalid(errors)

    def _create_values(self, model: BaseModel, created_at: datetime | None, stage: StageInfo | None) -> dict[str, Any]:
        dumped = {k: as_utc(v) for k, v in model.model_dump().items()}
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
