"""Scoring entities and storing the results: the payload each score is served with, the hash of
what it was computed from (so unchanged inputs are not rescored), history and current scores."""

from __future__ import annotations

import gc
import hashlib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from okyaku.db.models import Contact, Deal
from okyaku.predictions import features as feats
from okyaku.predictions.explain import ExplanationRequest, ExplanationWriter, write_explanation
from okyaku.predictions.factors import ScoredRow
from okyaku.predictions.models import CurrentPrediction
from okyaku.predictions.outlooks import deal_fields, deal_outlooks
from okyaku.predictions.scoring import score_dataset
from okyaku.predictions.store import PredictionRecord, store_predictions
from okyaku.predictions.tabular import Dataset
from okyaku.predictions.targets import ENTITY_OF, PREDICTION_OF, ModelTarget, churn_level
from okyaku.predictions.trained_models import LoadedModel, load_model

BATCH_FACTORS = 5


def input_hash(dataset: Dataset, row: int, loaded: LoadedModel) -> str:
    """What the score was computed from: the features (whole days for times) and the model."""
    values = [(s.name, dataset.columns[s.name][row]) for s in dataset.specs]
    material = repr((loaded.target, loaded.version, loaded.method, sorted(values)))
    return hashlib.sha256(material.encode()).hexdigest()


def input_hashes(dataset: Dataset, loaded: LoadedModel) -> list[str]:
    """``input_hash`` of every row (the same strings), a column at a time rather than a row."""
    names = sorted(s.name for s in dataset.specs)
    columns = [dataset.columns[name] for name in names]
    model = (loaded.target, loaded.version, loaded.method)
    if not columns:
        return [input_hash(dataset, i, loaded) for i in range(len(dataset))]
    sha256 = hashlib.sha256
    return [
        sha256(repr((*model, list(zip(names, row, strict=True)))).encode()).hexdigest()
        for row in zip(*columns, strict=True)
    ]


@contextmanager
def cyclic_gc_paused(pause: bool = True) -> Iterator[None]:
    """Scoring a batch allocates hundreds of thousands of small acyclic objects, each wave of
    which would trigger a full collection walking the whole heap; the collector resumes after."""
    paused = pause and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _subject_names(session: Session, target: ModelTarget, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    if target == "deal":
        return {r.id: r.name for r in session.execute(select(Deal.id, Deal.name).where(Deal.id.in_(ids)))}
    people = session.execute(
        select(Contact.id, Contact.first_name, Contact.last_name, Contact.email).where(Contact.id.in_(ids))
    )
    return {r.id: " ".join(p for p in (r.first_name, r.last_name) if p) or (r.email or "") for r in people}


def _payload(
    target: ModelTarget,
    entity_id: uuid.UUID,
    scored: ScoredRow,
    loaded: LoadedModel,
    explanation_text: str | None,
    recommendations: list[str] | None,
    explanation_source: str,
    degraded: bool,
    scored_at: datetime,
    prediction_id: uuid.UUID,
) -> dict[str, Any]:
    score = scored.score
    body: dict[str, Any] = {
        "prediction_id": str(prediction_id),
        ("deal_id" if target == "deal" else "contact_id"): str(entity_id),
        "target": PREDICTION_OF[target],
        "score": score,
        "method": loaded.method,
        "model_version": loaded.version,
        "algorithm": loaded.algorithm,
        "typical_score": scored.typical_score,
        "sub_scores": {g: s.as_dict() for g, s in scored.sub_scores.items()},
        "factors": [f.as_dict() for f in scored.factors],
        "explanation": explanation_text,
        "recommendations": recommendations,
        "explanation_source": explanation_source,
        "degraded": degraded or loaded.degraded,
        "scored_at": scored_at.isoformat(),
    }
    if target == "lead":
        body["probability"] = round(scored.probability, 4)
    elif target == "churn":
        body["probability"] = round(scored.probability, 4)
        body["level"] = churn_level(score)
    return body


def score_and_store(
    session: Session,
    target: ModelTarget,
    entity_ids: Sequence[uuid.UUID],
    *,
    now: datetime,
    writer: ExplanationWriter | None = None,
    loaded: LoadedModel | None = None,
    event_id: uuid.UUID | None = None,
    skip_unchanged: bool = False,
) -> list[dict[str, Any]]:
    """Score entities as of ``now``, explain, store history and the current score; returns the
    payloads of what was scored (entities already scored from identical inputs are skipped when
    ``skip_unchanged``). ``writer`` (one entity at a time) may be an LLM; batches use the template."""
    loaded = loaded or load_model(session, target, now=now)
    with cyclic_gc_paused(len(entity_ids) > 1):
        dataset = feats.features_for(session, target, [(entity_id, now) for entity_id in entity_ids])
        if not len(dataset):
            return []
        hashes = input_hashes(dataset, loaded)
        ids = [uuid.UUID(i) for i in dataset.ids]
        if skip_unchanged:
            current = dict(
                session.execute(
                    select(CurrentPrediction.entity_id, CurrentPrediction.input_hash).where(
                        CurrentPrediction.target == PREDICTION_OF[target], CurrentPrediction.entity_id.in_(ids)
                    )
                ).all()
            )
            keep = [i for i, entity_id in enumerate(ids) if current.get(entity_id) != hashes[i]]
            if len(keep) < len(ids):
                dataset = dataset.subset(keep)
                hashes = [hashes[i] for i in keep]
                ids = [ids[i] for i in keep]
            if not ids:
                return []
        single = len(ids) == 1 and writer is not None
        # A request's answer lists up to eight factors; a stored batch score keeps the top five.
        scored_rows = score_dataset(loaded.scorer, dataset, max_factors=8 if single else BATCH_FACTORS)
        today = now.date()
        outlooks = deal_outlooks(session, dataset, today) if target == "deal" else []
        names = _subject_names(session, target, ids) if single else {}
        prior_reason = str(loaded.metrics.get("reason", "")) if loaded.method == "prior" else ""
        payloads: list[dict[str, Any]] = []

        def records() -> Iterator[PredictionRecord]:
            for i, (entity_id, scored) in enumerate(zip(ids, scored_rows, strict=True)):
                if single:
                    request = ExplanationRequest(
                        target=PREDICTION_OF[target],
                        score=scored.score,
                        method=loaded.method,
                        typical_score=scored.typical_score,
                        factors=scored.factors,
                        subject=names.get(entity_id, ""),
                        level=churn_level(scored.score) if target == "churn" else None,
                        algorithm=loaded.algorithm,
                        prior_reason=prior_reason,
                    )
                    explanation, degraded = write_explanation(request, writer)
                    text, recommendations, source = explanation.text, explanation.recommendations, explanation.source
                else:
                    # Batches keep the factors; their templated words are rendered when read (the same
                    # template, deterministic), which keeps 10,000 stored scores small and fast to write.
                    text, recommendations, source, degraded = None, None, "template", False
                prediction_id = uuid.uuid4()
                payload = _payload(
                    target, entity_id, scored, loaded, text, recommendations, source, degraded, now, prediction_id
                )
                if loaded.method == "prior":
                    payload["basis"] = prior_reason
                if target == "deal":
                    payload.update(deal_fields(scored, outlooks[i], loaded, today))
                payloads.append(payload)
                yield PredictionRecord(
                    prediction_id=prediction_id,
                    entity_type=ENTITY_OF[target],
                    entity_id=entity_id,
                    target=PREDICTION_OF[target],
                    score=scored.score,
                    method=loaded.method,
                    model_version=loaded.version,
                    payload=payload,
                    input_hash=hashes[i],
                )

        # Streamed: the database parses the first rows while later ones are still being built.
        store_predictions(session, records(), scored_at=now, event_id=event_id, count=len(ids))
    return payloads
