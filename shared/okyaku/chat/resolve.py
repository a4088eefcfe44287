"""Names in questions → records or field values of the caller's organization (read-only, RLS).

One match: use it. Several: ask which. None: say so. Never pick one of several.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from okyaku.chat.catalogue import CATALOGUE, resolve_field
from okyaku.chat.compile import field_expression, label_expression, scope_for
from okyaku.chat.fallback import Lookup
from okyaku.chat.plan import Filter, QueryPlan

MAX_CHOICES = 5


@dataclass(frozen=True)
class Candidate:
    entity_type: str
    entity_id: str
    label: str


@dataclass
class LookupOutcome:
    filters: list[Filter]
    matched: list[Candidate]
    clarify: str | None = None  # a question back to the user
    missing: str | None = None  # nothing matched
    note: str | None = None


def find_records(session: Session, entity: str, name: str) -> list[Candidate]:
    """Records of ``entity`` whose label is ``name`` (any case); failing that, contains it."""
    spec = CATALOGUE[entity]
    scope = scope_for(entity)
    table: Any = scope.base
    label = label_expression(spec, table)
    exact = list(
        session.execute(select(table.c.id, label).where(func.lower(label) == name.lower()).limit(MAX_CHOICES + 1))
    )
    rows = exact
    if not rows:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = list(
            session.execute(
                select(table.c.id, label)
                .where(label.ilike(f"%{escaped}%", escape="\\"))
                .order_by(label)
                .limit(MAX_CHOICES + 1)
            )
        )
    return [Candidate(spec.entity_type, str(r[0]), str(r[1])) for r in rows]


def names_any_record(session: Session, terms: list[str]) -> bool:
    """Whether a word of ``terms`` (lower-case letters and digits) is a whole word of a company's,
    contact's or deal's name: a question naming a record is about the CRM."""
    if not terms:
        return False
    pattern = r"\m(" + "|".join(terms) + r")\M"
    for entity in ("companies", "contacts", "deals"):
        table: Any = scope_for(entity).base
        label = label_expression(CATALOGUE[entity], table)
        if session.execute(select(table.c.id).where(label.op("~*")(pattern)).limit(1)).first() is not None:
            return True
    return False


def record_label(session: Session, entity: str, entity_id: uuid.UUID) -> str | None:
    """The label of one record of ``entity``, or None when the organization has no such record."""
    scope = scope_for(entity)
    table: Any = scope.base
    row = session.execute(select(label_expression(CATALOGUE[entity], table)).where(table.c.id == entity_id)).first()
    return None if row is None else str(row[0] or entity_id)


def find_field_value(session: Session, entity: str, path: str, value: str) -> str | None:
    """The stored spelling of ``value`` in ``path`` of ``entity`` (any case), if some record has it."""
    spec = CATALOGUE[entity]
    scope = scope_for(entity)
    resolved = resolve_field(spec, path)
    if resolved.spec.kind not in ("string", "enum"):
        return None
    expr = field_expression(scope, resolved)
    wanted = value.lower().replace(" ", "_") if resolved.spec.kind == "enum" else value.lower()
    row = session.execute(
        select(expr).select_from(scope.from_clause()).where(func.lower(expr) == wanted).limit(1)
    ).first()
    return None if row is None else str(row[0])


def resolve_lookup(session: Session, plan: QueryPlan, lookup: Lookup) -> LookupOutcome:
    if lookup.record_targets:
        found: list[tuple[Candidate, str]] = []
        for entity, filter_field in lookup.record_targets:
            matches = find_records(session, entity, lookup.value)
            if matches:
                found = [(m, filter_field) for m in matches]
                break  # the first kind of record that has the name wins (companies before contacts)
        if not found:
            return LookupOutcome([], [], missing=f'I found no company or contact called "{lookup.value}".')
        if len(found) > 1:
            names = ", ".join(f"{c.label}" for c, _ in found[:MAX_CHOICES])
            more = " (and more)" if len(found) > MAX_CHOICES else ""
            return LookupOutcome([], [c for c, _ in found], clarify=f"Which one do you mean: {names}{more}?")
        candidate, filter_field = found[0]
        note = None
        if candidate.label.lower() != lookup.value.lower():
            note = f'Taking "{lookup.value}" to mean {candidate.label}, the only match.'
        return LookupOutcome([Filter(field=filter_field, op="eq", value=candidate.entity_id)], [candidate], note=note)
    hits: list[tuple[str, str]] = []
    for path in lookup.targets:
        stored = find_field_value(session, plan.entity, path, lookup.value)
        if stored is not None:
            hits.append((path, stored))
    if not hits:
        return LookupOutcome(
            [],
            [],
            missing=f'None of these records has "{lookup.value}" as a {" or ".join(map(_words, lookup.targets))}.',
        )
    if len(hits) > 1:
        options = " or ".join(f"{_words(path)} {stored}" for path, stored in hits)
        return LookupOutcome([], [], clarify=f'"{lookup.value}" could mean {options}. Which one?')
    path, stored = hits[0]
    return LookupOutcome([Filter(field=path, op="eq", value=stored)], [])


def _words(path: str) -> str:
    return path.replace(".", " ").replace("_", " ")
