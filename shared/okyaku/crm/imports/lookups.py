"""The records that reference columns name (by external id, name or email), loaded set-wise."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Session

from okyaku.crm.imports.catalogue import Reference
from okyaku.crm.imports.sql import any_of
from okyaku.db.models import Company, Contact, Deal, User

LOOKUP_CHUNK = 5000  # values per lookup statement, well under Postgres' 65535 parameters
LOOKUP_MODELS: dict[str, Any] = {"company": Company, "contact": Contact, "deal": Deal, "user": User}


class NoMatch(LookupError):
    """No record has the value (as opposed to several records having it)."""


def normalized_name(value: str) -> str:
    """A company name as names are compared when companies are created: case and spacing ignored."""
    return " ".join(value.split()).lower()


def normalized_name_sql(column: Any) -> ColumnElement[str]:
    """``normalized_name`` in SQL."""
    return func.lower(func.regexp_replace(func.btrim(column), r"\s+", " ", "g"))


class Lookups:
    """Ids of the records that reference columns name, loaded once per import, set-wise."""

    def __init__(self, organization_id: uuid.UUID) -> None:
        # Naming the organization (RLS filters by it anyway) lets Postgres use the per-organization indexes.
        self.organization_id = organization_id
        self.by_key: dict[tuple[str, str], dict[str, list[uuid.UUID]]] = {}
        self.visible: dict[str, set[uuid.UUID]] = {}
        self.company_by_normalized_name: dict[str, list[uuid.UUID]] = {}

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
                model.organization_id == self.organization_id, any_of(column, chunk)
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
            visible.update(session.scalars(select(model.id).where(any_of(model.id, chunk, UUID(as_uuid=True)))))

    def load_company_names(self, session: Session, names: set[str]) -> None:
        """Companies whose name matches one of ``names`` (normalized) ignoring case and spacing."""
        column = normalized_name_sql(Company.name)
        ordered = sorted(names)
        for start in range(0, len(ordered), LOOKUP_CHUNK):
            chunk = ordered[start : start + LOOKUP_CHUNK]
            statement = select(Company.id, column).where(
                Company.organization_id == self.organization_id, any_of(column, chunk)
            )
            for record_id, value in session.execute(statement):
                found = self.company_by_normalized_name.setdefault(value, [])
                if record_id not in found:
                    found.append(record_id)

    def resolve(self, reference: Reference, value: str) -> uuid.UUID:
        for key in reference.keys:
            lookup_value = value.lower() if key == "email" else value
            matches = self.by_key.get((reference.entity, key), {}).get(lookup_value, [])
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise LookupError(f"{len(matches)} {reference.entity} records have {key} {value!r}; use an external id")
        keys = " or ".join(reference.keys).replace("_", " ")
        raise NoMatch(f"no {reference.entity} with {keys} {value!r}")
