"""Reading and writing the ``embeddings`` table (inside an organization-scoped transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, delete, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from okyaku.embeddings.documents import EntityDocument
from okyaku.embeddings.models import EMBEDDABLE_TYPES, Embedding

EntityKey = tuple[str, uuid.UUID]  # (entity type, entity id)

_TABLES = {"company": "companies", "contact": "contacts", "deal": "deals", "activity": "activities"}


@dataclass(frozen=True)
class StoredState:
    content_hash: str
    source_version: int


def stored_states(session: Session, model: str, keys: Iterable[EntityKey]) -> dict[EntityKey, StoredState]:
    keys = list(keys)
    if not keys:
        return {}
    rows = session.execute(
        select(Embedding.entity_type, Embedding.entity_id, Embedding.content_hash, Embedding.source_version).where(
            Embedding.model == model,
            tuple_(Embedding.entity_type, Embedding.entity_id).in_(keys),
        )
    )
    return {(r.entity_type, r.entity_id): StoredState(r.content_hash, r.source_version) for r in rows}


def upsert_embeddings(
    session: Session,
    organization_id: uuid.UUID,
    model: str,
    dimension: int,
    documents: Sequence[EntityDocument],
    vectors: Sequence[Sequence[float]],
) -> None:
    """Insert or replace; a row written from a newer version of the record is never overwritten, and an
    identical one (same version, same text) is left as it is."""
    if not documents:
        return
    table = cast(Table, Embedding.__table__)  # Core insert: the ORM's bulk path costs ms per statement
    statement = insert(table).values(
        [
            {
                "organization_id": organization_id,
                "entity_type": document.entity_type,
                "entity_id": document.entity_id,
                "model": model,
                "dimension": dimension,
                "content_hash": document.content_hash,
                "source_version": document.version,
                "content": document.content,
                "embedding": list(vector),
            }
            for document, vector in zip(documents, vectors, strict=True)
        ]
    )
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=["organization_id", "entity_type", "entity_id", "model"],
        set_={
            "dimension": excluded.dimension,
            "content_hash": excluded.content_hash,
            "source_version": excluded.source_version,
            "content": excluded.content,
            "embedding": excluded.embedding,
            "updated_at": func.now(),
        },
        # Never from an older version; and not again from the same version and text (a duplicate
        # delivery handled at the same time by another instance): the row is already that write.
        where=(table.c.source_version < excluded.source_version)
        | ((table.c.source_version == excluded.source_version) & (table.c.content_hash != excluded.content_hash)),
    )
    session.execute(statement)


def delete_embeddings(session: Session, keys: Iterable[EntityKey]) -> int:
    """Remove every model's embedding of these records."""
    keys = list(keys)
    if not keys:
        return 0
    result = session.execute(
        delete(Embedding).where(tuple_(Embedding.entity_type, Embedding.entity_id).in_(keys)),
        execution_options={"synchronize_session": False},
    )
    return int(getattr(result, "rowcount", 0) or 0)


def delete_orphans(session: Session) -> int:
    """Embeddings whose record is gone (a deletion event that never arrived)."""
    removed = 0
    for entity_type in EMBEDDABLE_TYPES:
        result = session.execute(
            text(
                f"DELETE FROM embeddings e WHERE e.entity_type = :entity_type "
                f"AND NOT EXISTS (SELECT 1 FROM {_TABLES[entity_type]} r WHERE r.id = e.entity_id)"
            ),
            {"entity_type": entity_type},
        )
        removed += int(getattr(result, "rowcount", 0) or 0)
    return removed


def count_embeddings(session: Session, model: str, entity_types: Sequence[str] = EMBEDDABLE_TYPES) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(Embedding)
            .where(Embedding.model == model, Embedding.entity_type.in_(list(entity_types)))
        ).scalar_one()
    )
