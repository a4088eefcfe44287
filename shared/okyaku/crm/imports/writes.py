"""Writing a batch: inserts and versioned updates, deal stage history, and the outbox rows of the
change events, in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, text, update
from sqlalchemy.orm import Session

from okyaku.crm.imports.catalogue import MANAGED_COLUMNS, ImportTarget, table_of
from okyaku.crm.imports.sql import insert_rows
from okyaku.db.models import DealStageHistory, OutboxEvent
from okyaku.events.model import ChangeEvent, Operation

# (the record as read, its values after the row, the columns that changed)
Update = tuple[dict[str, Any], dict[str, Any], list[str]]


class BatchWriter:
    """Writes one batch of an import's rows, with their change events, in the session's transaction."""

    def __init__(
        self,
        session: Session,
        target: ImportTarget,
        organization_id: uuid.UUID,
        actor: uuid.UUID | None,
        now: datetime,
    ) -> None:
        self.session = session
        self.target = target
        self.organization_id = organization_id
        self.actor = actor
        self.now = now

    def write(self, creates: Sequence[dict[str, Any]], updates: Sequence[Update]) -> list[ChangeEvent]:
        """Insert ``creates``, apply ``updates``; returns the change events, already in the outbox."""
        session, table = self.session, self.target.table
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
        return events

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

    def _write_stage_history(self, creates: Sequence[dict[str, Any]], updates: Sequence[Update]) -> None:
        history = [
            {
                "deal_id": values["id"],
                "from_stage_id": None,
                "to_stage_id": values["stage_id"],
                "changed_at": values["stage_entered_at"],
                "changed_by": self.actor,
            }
            for values in creates
        ] + [
            {
                "deal_id": current["id"],
                "from_stage_id": current["stage_id"],
                "to_stage_id": values["stage_id"],
                "changed_at": values["stage_entered_at"],
                "changed_by": self.actor,
            }
            for current, values, changed in updates
            if "stage_id" in changed
        ]
        if history:
            insert_rows(self.session, table_of(DealStageHistory), history)
