"""Companies an import creates for the rows that name one not there yet (``create_companies``).

One company per distinct name, names compared ignoring case and spacing, existing companies
matched the same way: "ACME  inc" in a file is the stored "Acme Inc". A company is created only
for a row that is otherwise imported, before that row is written (in the same transaction, with
its own change event).

Two imports running at once that name the same new company would each find it missing and each
create it. So, before looking a missing name up the second time, an import takes a transaction
advisory lock per name (in one global order, so two imports cannot deadlock): the second import
waits for the first one's commit and then finds its company.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from okyaku.crm import schemas as s
from okyaku.crm.imports.catalogue import TARGETS
from okyaku.crm.imports.lookups import Lookups, normalized_name
from okyaku.crm.imports.writes import BatchWriter
from okyaku.events.model import ChangeEvent

# Reference columns that name a company by name, so a missing one can be created from it.
CREATING_FIELDS = frozenset({"company", "company_name"})


class CannotCreate(ValueError):
    """The name is not a valid company name (too long, say)."""


@dataclass
class Pending:
    id: uuid.UUID
    name: str  # as the file first spells it
    written: bool = False


@dataclass
class NewCompanies:
    """The companies one import creates, keyed by normalized name."""

    organization_id: uuid.UUID
    lookups: Lookups
    pending: dict[str, Pending] = field(default_factory=dict)
    created_names: list[str] = field(default_factory=list)

    def prepare(self, session: Session, values: Iterable[str], *, lock: bool) -> None:
        """Match the names no company has exactly to companies by normalized name; with ``lock``
        (a real import), first lock each name still missing, so that what a concurrent import
        creates is found here once it commits."""
        names = {normalized_name(v) for v in values} - {""}
        if not names:
            return
        self.lookups.load_company_names(session, names)
        missing = sorted(names - set(self.lookups.company_by_normalized_name))
        if missing and lock:
            session.execute(
                text(
                    "SELECT pg_advisory_xact_lock(k) FROM ("
                    "  SELECT DISTINCT hashtextextended(CAST(:org AS text) || ':company:' || n, 0) AS k"
                    "  FROM unnest(CAST(:names AS text[])) AS n"
                    ") AS keys ORDER BY k"
                ),
                {"org": str(self.organization_id), "names": missing},
            )
            self.lookups.load_company_names(session, set(missing))

    def resolve(self, value: str) -> tuple[uuid.UUID, str | None]:
        """The company ``value`` names: an existing one (matched ignoring case and spacing), or the
        one this import creates. Returns its id and, for one to create, its normalized name."""
        key = normalized_name(value)
        existing = self.lookups.company_by_normalized_name.get(key, [])
        if len(existing) == 1:
            return existing[0], None
        if len(existing) > 1:
            raise LookupError(f"{len(existing)} companies are named like {value!r}; use an external id")
        pending = self.pending.get(key)
        if pending is None:
            name = " ".join(value.split())
            try:
                s.CompanyCreate.model_validate({"name": name})
            except ValidationError as error:
                message = error.errors()[0].get("msg", "invalid")
                raise CannotCreate(f"cannot create a company named {value!r}: {message}") from error
            pending = self.pending[key] = Pending(uuid.uuid4(), name)
        return pending.id, key

    def take(self, keys: Iterable[str]) -> list[Pending]:
        """The companies of ``keys`` not yet taken (to write before the rows that need them)."""
        taken = []
        for key in dict.fromkeys(keys):
            pending = self.pending[key]
            if not pending.written:
                pending.written = True
                self.created_names.append(pending.name)
                taken.append(pending)
        return taken

    def write(
        self, session: Session, companies: list[Pending], actor: uuid.UUID | None, now: datetime
    ) -> list[ChangeEvent]:
        """Insert ``companies`` with their change events (as a company import would)."""
        if not companies:
            return []
        target = TARGETS["company"]
        rows: list[dict[str, Any]] = []
        for company in companies:
            dumped = s.CompanyCreate(name=company.name).model_dump()
            values = {c: dumped.get(c) for c in target.columns}
            values.update(id=company.id, created_at=now, updated_at=now)
            rows.append(values)
        return BatchWriter(session, target, self.organization_id, actor, now).write(rows, [])
