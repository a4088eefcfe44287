"""Which column of the file goes to which field: an explicit mapping first, then the field names
and their aliases; the other columns become custom properties. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from okyaku.crm.import_report import ImportRowError
from okyaku.crm.imports.catalogue import ALIASES, COMMON_ALIASES, ImportTarget
from okyaku.errors import ValidationFailed, field_error

IGNORE = ("", "-", "ignore")
CUSTOM_PREFIXES = ("custom_properties.", "custom.")


def normalize_header(name: str) -> str:
    """Case, spaces, underscores and punctuation do not matter: "E-mail" == "email"."""
    return re.sub(r"[\W_]+", "", name.casefold())


def custom_property_name(header: str) -> str:
    return re.sub(r"\W+", "_", header.strip().casefold()).strip("_")


def resolve_header(target: ImportTarget, header: str) -> str | None:
    """The field a column header names: a field's own name first, then an alias."""
    key = normalize_header(header)
    for name in target.known_fields:
        if normalize_header(name) == key:
            return name
    for aliases in (ALIASES[target.entity_type], COMMON_ALIASES):
        for name, others in aliases.items():
            if name in target.known_fields and key in {normalize_header(o) for o in others}:
                return name
    return None


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

    def error(self, row: int, column: int | None, field_name: str, message: str) -> ImportRowError:
        """A row's error, naming the column as the file's header does."""
        header = self.headers[column] if column is not None else None
        return ImportRowError(row=row, column=header, field=field_name, message=message)


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
            destination = resolve_header(target, header)
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
