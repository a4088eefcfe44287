"""Reading and writing the predictions tables inside an organization-scoped session."""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, Text, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Session

from okyaku.config import get_settings
from okyaku.predictions.classifier import deserialize, serialize, signing_key
from okyaku.predictions.models import PredictionModel
from okyaku.predictions.training import ClassifierOutcome, RegressorOutcome

_CACHE_SIZE = 32
_cache: OrderedDict[uuid.UUID, Any] = OrderedDict()
_cache_lock = threading.Lock()


def latest_model(session: Session, target: str) -> PredictionModel | None:
    """The newest model row for ``target`` (its artefact is loaded only on demand)."""
    return session.scalar(
        select(PredictionModel)
        .where(PredictionModel.target == target)
        .order_by(PredictionModel.version.desc())
        .limit(1)
    )


def model_history(session: Session, target: str | None = None, limit: int = 20) -> list[PredictionModel]:
    statement = select(PredictionModel).order_by(PredictionModel.trained_at.desc()).limit(limit)
    if target:
        statement = statement.where(PredictionModel.target == target)
    return list(session.scalars(statement))


def _artefact_key() -> bytes:
    settings = get_settings()
    return signing_key(settings.model_signing_key, settings.database_url)


def load_artefact(session: Session, row: PredictionModel) -> Any:
    """The unpickled model, cached per model row (rows are never updated, so the cache is exact)."""
    with _cache_lock:
        if row.id in _cache:
            _cache.move_to_end(row.id)
            return _cache[row.id]
    blob = session.scalar(select(PredictionModel.artefact).where(PredictionModel.id == row.id))
    if blob is None:
        raise ValueError(f"model {row.id} has no artefact")
    model = deserialize(blob, _artefact_key())
    with _cache_lock:
        _cache[row.id] = model
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return model


def _next_version(session: Session, target: str) -> int:
    # Serialise concurrent trainings of the same target in this organization (nightly job vs
    # a first request): the second waits and takes the next version.
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(current_setting('app.organization_id') || :target))"),
        {"target": target},
    )
    current = session.scalar(select(func.max(PredictionModel.version)).where(PredictionModel.target == target))
    return int(current or 0) + 1


def save_classifier(session: Session, target: str, outcome: ClassifierOutcome) -> PredictionModel:
    row = PredictionModel(
        target=target,
        version=_next_version(session, target),
        method=outcome.method,
        algorithm=outcome.algorithm,
        n_examples=outcome.n_examples,
        n_positive=outcome.n_positive,
        n_train=outcome.n_train,
        n_test=outcome.n_test,
        metrics=_jsonable(outcome.metrics),
        features=[{"name": s.name, "kind": s.kind, "group": s.group, "label": s.text} for s in outcome.features],
        excluded_features=[e.as_dict() for e in outcome.excluded],
        artefact=serialize(outcome.model, _artefact_key()) if outcome.model is not None else None,
    )
    session.add(row)
    session.flush()
    return row


def save_regressor(session: Session, target: str, outcome: RegressorOutcome) -> PredictionModel:
    row = PredictionModel(
        target=target,
        version=_next_version(session, target),
        method=outcome.method,
        algorithm="gradient_boosting" if outcome.method == "model" else "median",
        n_examples=outcome.n_examples,
        n_positive=0,
        n_train=outcome.n_train,
        n_test=outcome.n_test,
        metrics=_jsonable(outcome.metrics),
        features=[{"name": s.name, "kind": s.kind, "group": s.group, "label": s.text} for s in outcome.features],
        excluded_features=[],
        artefact=serialize(outcome.model, _artefact_key()),  # the prior is a fitted median and range: stored too
    )
    session.add(row)
    session.flush()
    return row


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@dataclass(frozen=True)
class PredictionRecord:
    prediction_id: uuid.UUID
    entity_type: str
    entity_id: uuid.UUID
    target: str
    score: float
    method: str
    model_version: int | None
    payload: dict[str, Any]
    input_hash: str


# One JSON document of rows: quoting thousands of JSON payloads as elements of a text array
# costs the client seconds, and a second set-returning function would need joining by ordinal.
_INSERT_PREDICTIONS = text(
    """
    INSERT INTO predictions (id, entity_type, entity_id, target, score, method, model_version, payload)
    SELECT id, entity_type, entity_id, target, score, method, model_version, payload
      FROM jsonb_to_recordset(CAST(:rows AS jsonb))
           AS r(id uuid, entity_type text, entity_id uuid, target text, score float8, method text,
                model_version int, payload jsonb)
    """
)

_UPSERT_CURRENT = text(
    """
    INSERT INTO current_predictions (target, entity_id, prediction_id, score, input_hash, model_version,
                                     last_event_id, scored_at)
    SELECT target, entity_id, prediction_id, score, input_hash, model_version, :event_id, :scored_at
      FROM unnest(:targets, :entity_ids, :ids, :scores, :hashes, :versions)
           AS c(target, entity_id, prediction_id, score, input_hash, model_version)
    ON CONFLICT (organization_id, target, entity_id) DO UPDATE
       SET prediction_id = EXCLUDED.prediction_id, score = EXCLUDED.score, input_hash = EXCLUDED.input_hash,
           model_version = EXCLUDED.model_version, last_event_id = EXCLUDED.last_event_id,
           scored_at = EXCLUDED.scored_at
    """
).bindparams(
    bindparam("targets", type_=ARRAY(Text())),
    bindparam("entity_ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
    bindparam("scores", type_=ARRAY(Float())),
    bindparam("hashes", type_=ARRAY(Text())),
    bindparam("versions", type_=ARRAY(Integer())),
    bindparam("event_id", type_=UUID(as_uuid=True)),
)


# Batches at least this large are staged with COPY (one round of parsing, streamed while the
# client still serialises) rather than sent as one JSON document.
COPY_THRESHOLD = 200

# COPY cannot write into a table under row-level security, so rows are copied into a temporary
# table and moved by one INSERT ... SELECT, which RLS checks like any other insert.
_CREATE_STAGE = text(
    """
    CREATE TEMPORARY TABLE prediction_stage (
        id uuid, entity_type text, entity_id uuid, target text, score float8, method text,
        model_version int, payload jsonb, input_hash text
    ) ON COMMIT DROP
    """
)
_COPY_STAGE = (
    "COPY prediction_stage (id, entity_type, entity_id, target, score, method, model_version, payload, input_hash) "
    "FROM STDIN"
)
_MOVE_STAGE = text(
    """
    WITH history AS (
        INSERT INTO predictions (id, entity_type, entity_id, target, score, method, model_version, payload)
        SELECT id, entity_type, entity_id, target, score, method, model_version, payload FROM prediction_stage
    )
    INSERT INTO current_predictions (target, entity_id, prediction_id, score, input_hash, model_version,
                                     last_event_id, scored_at)
    SELECT target, entity_id, id, score, input_hash, model_version, :event_id, :scored_at FROM prediction_stage
    ON CONFLICT (organization_id, target, entity_id) DO UPDATE
       SET prediction_id = EXCLUDED.prediction_id, score = EXCLUDED.score, input_hash = EXCLUDED.input_hash,
           model_version = EXCLUDED.model_version, last_event_id = EXCLUDED.last_event_id,
           scored_at = EXCLUDED.scored_at
    """
).bindparams(bindparam("event_id", type_=UUID(as_uuid=True)))


_LOCK_SCORES = text(
    "SELECT pg_advisory_xact_lock(hashtextextended(key, 0)) "
    "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS k(key, n) ORDER BY n"
)


def lock_scores(session: Session, keys: Iterable[tuple[str, uuid.UUID]]) -> None:
    """Serialise the writers of these (target, entity) scores until the transaction ends, so two
    deliveries of one change event handled at once score it once: the second waits, then finds
    the first one's inputs hash. Taken in one sorted order, so two writers never deadlock."""
    ordered = sorted({f"prediction:{target}:{entity_id}" for target, entity_id in keys})
    if ordered:
        session.execute(_LOCK_SCORES, {"keys": ordered})


def lock_training(session: Session, target: str) -> None:
    """Serialise the first training of the organization's ``target`` model until the transaction
    ends: two change events scored at once would otherwise each train (and store) a version 1 and
    a version 2, and every score made from the first would be made again from the second."""
    session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended("
            "'prediction-training:' || :target || ':' || current_setting('app.organization_id', true), 0))"
        ),
        {"target": target},
    )


def store_predictions(
    session: Session,
    records: Iterable[PredictionRecord],
    *,
    scored_at: datetime,
    event_id: uuid.UUID | None = None,
    count: int | None = None,
) -> None:
    """Insert every record into the history and make it the current score, in a fixed number of
    statements whatever the number of records. ``count`` (when ``records`` is a generator) picks
    the way without consuming it: large batches are streamed into COPY as they are produced."""
    if count is None or count < COPY_THRESHOLD:
        records = list(records)
        count = len(records)
    if count >= COPY_THRESHOLD:
        store_by_copy(session, records, scored_at=scored_at, event_id=event_id)
    elif count:
        store_by_statements(session, list(records), scored_at=scored_at, event_id=event_id)


def store_by_copy(
    session: Session, records: Iterable[PredictionRecord], *, scored_at: datetime, event_id: uuid.UUID | None = None
) -> None:
    """COPY into a temporary table, then one statement appends the history and upserts the
    current scores from it."""
    session.execute(_CREATE_STAGE)
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    encode = json.JSONEncoder(default=str).encode
    with cursor, cursor.copy(_COPY_STAGE) as copy:
        for r in records:
            copy.write_row(
                (
                    str(r.prediction_id),
                    r.entity_type,
                    str(r.entity_id),
                    r.target,
                    r.score,
                    r.method,
                    r.model_version,
                    encode(r.payload),
                    r.input_hash,
                )
            )
    session.execute(_MOVE_STAGE, {"event_id": event_id, "scored_at": scored_at})
    session.execute(text("DROP TABLE prediction_stage"))  # a second batch in this transaction stages anew


def store_by_statements(
    session: Session, records: list[PredictionRecord], *, scored_at: datetime, event_id: uuid.UUID | None = None
) -> None:
    """Two statements with array parameters (no temporary table: cheaper for a few records)."""
    rows = [
        {
            "id": str(r.prediction_id),
            "entity_type": r.entity_type,
            "entity_id": str(r.entity_id),
            "target": r.target,
            "score": r.score,
            "method": r.method,
            "model_version": r.model_version,
            "payload": r.payload,
        }
        for r in records
    ]
    session.execute(_INSERT_PREDICTIONS, {"rows": json.dumps(rows, default=str)})
    session.execute(
        _UPSERT_CURRENT,
        {
            "targets": [r.target for r in records],
            "entity_ids": [r.entity_id for r in records],
            "ids": [r.prediction_id for r in records],
            "scores": [r.score for r in records],
            "hashes": [r.input_hash for r in records],
            "versions": [r.model_version for r in records],
            "event_id": event_id,
            "scored_at": scored_at,
        },
    )
