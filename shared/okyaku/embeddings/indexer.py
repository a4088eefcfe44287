"""Bringing embeddings up to date: for change events (the queue consumer) and for everything (backfill).

The work is state-based: an event only says *which* record to look at; the record's current
text decides what is stored. Redelivered, duplicated or reordered events therefore converge
on the same rows, unchanged text is never embedded twice, and a record that no longer exists
loses its embeddings.

When the embedding model fails (the gateway's errors: unreachable, timed out, circuit open, another
model answered), a change event's records are left for the backfill, which embeds whatever has no
current embedding, and the message is acknowledged: retried message by message through an
outage, every one would end in the DLQ. The DLQ is for what retrying can fix or someone must see.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from okyaku.db import Database
from okyaku.embeddings.documents import EntityDocument, dependent_ids, document_page, load_documents
from okyaku.embeddings.models import EMBEDDABLE_TYPES
from okyaku.embeddings.protocol import Embedder
from okyaku.embeddings.store import EntityKey, delete_embeddings, delete_orphans, stored_states, upsert_embeddings
from okyaku.errors import DependencyUnavailable
from okyaku.events import decode_change_event
from okyaku.events.model import ChangeEvent
from okyaku.tenancy import list_organization_ids

logger = logging.getLogger(__name__)


WorkKey = tuple[uuid.UUID, EntityKey]


class InvalidChangeEvent(ValueError):
    """The message is not a change event: retrying cannot help (it ends in the DLQ)."""


class EmbedderUnavailable(DependencyUnavailable):
    """The embedding model failed (the gateway's error, code kept): the record is left for the backfill."""

    def __init__(self, cause: DependencyUnavailable) -> None:
        super().__init__(cause.message, code=cause.code, details=cause.details)


@dataclass(frozen=True)
class IncomingMessage:
    message_id: str
    body: str


@dataclass
class _Work:
    """One record to bring up to date."""

    organization_id: uuid.UUID
    key: EntityKey
    document: EntityDocument | None = None  # None: the record is gone, delete its embeddings
    unchanged: bool = False
    vector: list[float] | None = None
    error: BaseException | None = None
    written: bool = False


@dataclass
class _Message:
    message_id: str
    event: ChangeEvent | None = None
    works: list[WorkKey] = field(default_factory=list)
    error: BaseException | None = None


@dataclass
class ApplyResult:
    stored: int = 0
    unchanged: int = 0
    deleted: int = 0
    left_for_backfill: int = 0  # the embedding model failed on them


class IndexingBatch:
    """A prepared batch: texts loaded and embedded together; ``apply`` writes one message's rows."""

    def __init__(self, indexer: EmbeddingIndexer, messages: dict[str, _Message], works: dict[WorkKey, _Work]) -> None:
        self._indexer = indexer
        self._messages = messages
        self._works = works

    @property
    def message_ids(self) -> list[str]:
        return list(self._messages)

    def write_all(self) -> None:
        """Write every ready record, one transaction per organization (few round trips).

        What cannot be written this way is left to ``apply``, message by message, so a
        failure still touches only the messages it belongs to.
        """
        ready: dict[uuid.UUID, list[_Work]] = defaultdict(list)
        for work in self._works.values():
            if work.error is None and not work.written and (work.document is None or work.vector or work.unchanged):
                ready[work.organization_id].append(work)
        for organization_id, works in ready.items():
            try:
                self._indexer.write(organization_id, works)
            except Exception as error:  # e.g. a constraint violation by one row: isolate it below
                logger.warning(
                    "batched write for organization %s failed; writing one by one: %s", organization_id, error
                )
                continue
            for work in works:
                work.written = True

    def apply(self, message_id: str) -> ApplyResult:
        """Write the message's rows in one transaction, or raise why it cannot be (it is then retried)."""
        message = self._messages[message_id]
        if message.error is not None:
            raise message.error
        works = [self._works[key] for key in message.works]
        for work in works:
            if work.error is not None and not isinstance(work.error, EmbedderUnavailable):
                raise work.error
        result = ApplyResult()
        left = [w for w in works if w.error is not None]
        if left:
            result.left_for_backfill = len(left)
            logger.info("message %s: %d records left for the backfill: %s", message_id, len(left), left[0].error)
        pending = [w for w in works if not w.written and w.error is None]
        by_org: dict[uuid.UUID, list[_Work]] = defaultdict(list)
        for work in pending:
            by_org[work.organization_id].append(work)
        for organization_id, org_works in by_org.items():
            result_for_org = self._indexer.write(organization_id, org_works)
            result.stored += result_for_org.stored
            result.deleted += result_for_org.deleted
            result.unchanged += result_for_org.unchanged
        for work in pending:
            work.written = True
        return result


class EmbeddingIndexer:
    def __init__(
        self,
        db: Database,
        embedder: Embedder,
        *,
        batch_size: int = 32,
        fanout_limit: int = 200,
    ) -> None:
        self.db = db
        self.embedder = embedder
        self.batch_size = max(1, batch_size)
        self.fanout_limit = fanout_limit

    # --- change events -------------------------------------------------------------------

    def prepare(self, incoming: Sequence[IncomingMessage]) -> IndexingBatch:
        messages: dict[str, _Message] = {}
        for item in incoming:
            message = _Message(item.message_id)
            try:
                message.event = decode_change_event(item.body)
            except (ValueError, ValidationError) as error:  # json errors are ValueErrors too
                message.error = InvalidChangeEvent(f"message {item.message_id} is not a change event: {error}")
            messages[item.message_id] = message

        works: dict[WorkKey, _Work] = {}
        by_org: dict[uuid.UUID, list[_Message]] = defaultdict(list)
        for message in messages.values():
            if message.event is not None and message.event.entity_type in EMBEDDABLE_TYPES:
                by_org[message.event.organization_id].append(message)
        for organization_id, org_messages in by_org.items():
            try:
                self._load(organization_id, org_messages, works)
            except Exception as error:  # a database problem fails this organization's messages only
                logger.warning("loading records of organization %s failed: %s", organization_id, error)
                for message in org_messages:
                    message.error = error
                for work in works.values():
                    if work.organization_id == organization_id:
                        work.error = error  # never read "not found" into a failed load
        self._embed([w for w in works.values() if w.document is not None and not w.unchanged])
        return IndexingBatch(self, messages, works)

    def _load(self, organization_id: uuid.UUID, org_messages: list[_Message], works: dict[WorkKey, _Work]) -> None:
        with self.db.organization_scope(organization_id) as session:
            for message in org_messages:
                assert message.event is not None
                event = message.event
                keys: list[EntityKey] = [(event.entity_type, event.entity_id)]
                if event.operation == "updated":
                    keys += dependent_ids(
                        session, event.entity_type, event.entity_id, event.changed_fields, limit=self.fanout_limit
                    )
                for key in keys:
                    works.setdefault((organization_id, key), _Work(organization_id, key))
                    message.works.append((organization_id, key))
            keys_by_type: dict[str, list[uuid.UUID]] = defaultdict(list)
            org_works = [w for w in works.values() if w.organization_id == organization_id]
            for work in org_works:
                keys_by_type[work.key[0]].append(work.key[1])
            documents: dict[EntityKey, EntityDocument] = {}
            for entity_type, ids in keys_by_type.items():
                for entity_id, document in load_documents(session, entity_type, ids).items():
                    documents[(entity_type, entity_id)] = document
            states = stored_states(session, self.embedder.model, documents)
            for work in org_works:
                work.document = documents.get(work.key)
                state = states.get(work.key)
                work.unchanged = (
                    work.document is not None and state is not None and state.content_hash == work.document.content_hash
                )

    def _embed(self, works: list[_Work]) -> None:
        """Embed in batches; a failing batch is retried text by text so one bad text fails alone."""
        for start in range(0, len(works), self.batch_size):
            chunk = works[start : start + self.batch_size]
            try:
                vectors = self._checked_embed([w.document.content for w in chunk if w.document])
            except Exception as batch_error:
                if len(chunk) == 1:
                    chunk[0].error = batch_error
                    continue
                for work in chunk:
                    try:
                        work.vector = self._checked_embed([work.document.content if work.document else ""])[0]
                    except Exception as error:
                        work.error = error
                continue
            for work, vector in zip(chunk, vectors, strict=True):
                work.vector = vector

    def _checked_embed(self, texts: list[str]) -> list[list[float]]:
        try:
            vectors = self.embedder.embed(texts)
        except DependencyUnavailable as error:  # the model's failure, not this code's
            raise EmbedderUnavailable(error) from error
        if len(vectors) != len(texts) or any(len(v) != self.embedder.dimension for v in vectors):
            raise ValueError(f"the embedder returned vectors of the wrong number or size for {self.embedder.model}")
        return vectors

    def write(self, organization_id: uuid.UUID, works: Sequence[_Work]) -> ApplyResult:
        result = ApplyResult()
        to_store = [w for w in works if w.document is not None and not w.unchanged]
        to_delete = [w.key for w in works if w.document is None]
        result.unchanged = sum(1 for w in works if w.unchanged)
        with self.db.organization_scope(organization_id) as session:
            upsert_embeddings(
                session,
                organization_id,
                self.embedder.model,
                self.embedder.dimension,
                [w.document for w in to_store if w.document is not None],
                [w.vector or [] for w in to_store],
            )
            result.stored = len(to_store)
            result.deleted = delete_embeddings(session, to_delete)
        return result

    # --- backfill -----------------------------------------------------------------------

    def backfill(
        self,
        *,
        organization_ids: Iterable[uuid.UUID] | None = None,
        entity_types: Sequence[str] = EMBEDDABLE_TYPES,
        page_size: int = 256,
        deadline: float | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> BackfillReport:
        """Embed every record whose current text has no embedding for this model; remove orphans.

        Pages commit as they go and up-to-date records are skipped, so an interrupted run
        (or one stopped at ``deadline``, a ``time.monotonic()`` value) resumes where it was.
        """
        report = BackfillReport(model=self.embedder.model)
        organizations = list(organization_ids) if organization_ids is not None else list_organization_ids(self.db)
        for organization_id in organizations:
            report.organizations += 1
            for entity_type in entity_types:
                after: uuid.UUID | None = None
                while True:
                    if deadline is not None and time.monotonic() >= deadline:
                        report.complete = False
                        return report
                    with self.db.organization_scope(organization_id) as session:
                        page = document_page(session, entity_type, after=after, limit=page_size)
                        states = stored_states(
                            session, self.embedder.model, [(d.entity_type, d.entity_id) for d in page]
                        )
                    if not page:
                        break
                    after = page[-1].entity_id
                    stale = [
                        d
                        for d in page
                        if (state := states.get((d.entity_type, d.entity_id))) is None
                        or state.content_hash != d.content_hash
                    ]
                    for start in range(0, len(stale), self.batch_size):
                        chunk = stale[start : start + self.batch_size]
                        try:
                            vectors = self._checked_embed([d.content for d in chunk])
                        except EmbedderUnavailable as error:
                            # The next scheduled backfill resumes here (up-to-date records are skipped).
                            logger.warning("backfill stopped: the embedding model failed: %s", error.message)
                            report.complete = False
                            report.embedder_error = error.code
                            return report
                        with self.db.organization_scope(organization_id) as session:
                            upsert_embeddings(
                                session, organization_id, self.embedder.model, self.embedder.dimension, chunk, vectors
                            )
                        report.embedded += len(chunk)
                        if on_progress:
                            on_progress(0, len(chunk))
                    report.scanned += len(page)
                    report.unchanged += len(page) - len(stale)
                    if on_progress:
                        on_progress(len(page), 0)
            with self.db.organization_scope(organization_id) as session:
                report.orphans_deleted += delete_orphans(session)
        return report


@dataclass
class BackfillReport:
    model: str
    organizations: int = 0
    scanned: int = 0
    embedded: int = 0
    unchanged: int = 0
    orphans_deleted: int = 0
    complete: bool = True
    embedder_error: str | None = None  # why it stopped early, when the embedding model failed
