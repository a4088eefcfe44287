"""Reading and writing the predictions tables inside an organization-scoped session."""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Float, Integer, Text, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Session

from okyaku.predictions.models import PredictionModel
from okyaku.predictions.training import ClassifierOutcome, RegressorOutcome, deserialize, serialize

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


def load_artefact(session: Session, row: PredictionModel) -> Any:
    """The unpickled model, cached per model row (rows are never updated, so the cache is exact)."""
    with _cache_lock:
        if row.id in _cache:
            _cache.move_to_end(row.id)
            return _cache[row.id]
    blob = session.scalar(select(PredictionModel.artefact).where(PredictionModel.id == row.id))
    if blob is None:
        raise ValueError(f"model {row.id} has no artefact")
    model = deserialize(blob)
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
        artefact=serialize(outcome.model) if outcome.model is not None else None,
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
        artefact=serialize(outcome.model),  # the prior is a fitted median and range: stored too
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


def store_predictions(
    session: Session, records: list[PredictionRecord], *, scored_at: datetime, event_id: uuid.UUID | None = None
) -> None:
    """Insert every record into the history and make it the current score: two statements
    whatever the number of records (array parameters rather than one row per statement)."""
    if not records:
        return
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
