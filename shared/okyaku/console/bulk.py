"""Bulk actions on every record a list's search and filters match, not only the ticked rows of
one page: the selection is re-read chunk by chunk (the list's own keyset cursor, newest first),
each chunk applied through the services (one transaction and change event per record), and the
page shows how far it got. A chunk is one short request: no request runs long enough to meet
the gateway's timeout, whatever the selection's size; htmx asks for the next chunk by itself,
without JavaScript a Continue button does.

Records created after the action started come before the cursor and are left out: the action
applies to what matched when it began."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from okyaku.console import queries as qs

# Records per request: each is its own transaction, so a chunk takes about CHUNK small writes.
CHUNK = 100
# The names a bulk delete's confirmation lists (the count covers all of them).
CONFIRM_NAMES = 10


@dataclass(frozen=True)
class Selection:
    """A list's search and filters, as in its URL."""

    q: str = ""
    owner: str = ""
    lifecycle_stage: str = ""
    stage: str = ""

    @classmethod
    def from_form(cls, form: Mapping[str, Any]) -> Selection:
        """The selection a bulk form carries (``filter_<name>`` fields, beside the new owner)."""
        return cls(
            **{name: str(form.get(f"filter_{name}") or "")[:500] for name in ("q", "owner", "lifecycle_stage", "stage")}
        )

    def hidden_fields(self) -> dict[str, str]:
        return {f"filter_{k}": v for k, v in vars(self).items() if v}

    def query_string(self) -> str:
        return urlencode({k: v for k, v in vars(self).items() if v})

    def filters(self, entity: str, me: uuid.UUID | None) -> dict[str, Any]:
        return qs.list_filters(entity, owner=self.owner, me=me, lifecycle_stage=self.lifecycle_stage, stage=self.stage)


def matching_count(session: Session, entity: str, selection: Selection, me: uuid.UUID | None) -> int:
    return qs.SERVICES[entity].count(session, selection.filters(entity, me), selection.q.strip() or None)


def next_chunk(
    session: Session, entity: str, selection: Selection, me: uuid.UUID | None, cursor: str | None, limit: int = CHUNK
) -> tuple[list[Any], str | None]:
    """The next ``limit`` matching records after ``cursor``, and the cursor after them (None: done)."""
    return qs.list_records(
        session,
        entity,
        q=selection.q.strip() or None,
        cursor=cursor,
        filters=selection.filters(entity, me),
        limit=limit,
    )


@dataclass(frozen=True)
class Progress:
    """How far a bulk action over a selection got; carried from chunk to chunk by the page."""

    action: str  # assign or delete
    total: int  # matching when it started
    done: int = 0
    refused: int = 0
    cursor: str | None = None
    finished: bool = False

    @classmethod
    def from_form(cls, form: Mapping[str, Any], action: str, total: int) -> Progress:
        def number(name: str) -> int:
            text = str(form.get(name) or "")
            return int(text) if text.isdigit() else 0

        return cls(
            action, number("total") or total, number("done"), number("refused"), str(form.get("cursor") or "") or None
        )

    def after(self, done: int, refused: int, cursor: str | None) -> Progress:
        return Progress(self.action, self.total, self.done + done, self.refused + refused, cursor, cursor is None)

    @property
    def handled(self) -> int:
        return self.done + self.refused
