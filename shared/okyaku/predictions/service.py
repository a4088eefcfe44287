"""The predictions service: training per organization and target, scoring with factors and
explanations, storing history, batch listings, the pipeline forecast, and the triggers'
entry points (nightly job, record-change events)."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import logging
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from okyaku.crm.listing import decode_cursor, encode_cursor, invalid_cursor
from okyaku.db.models import Activity, Company, Contact, Deal, Task
from okyaku.errors import NotFound, ValidationFailed, field_error
from okyaku.events.model import ChangeEvent
from okyaku.predictions import features as feats
from okyaku.predictions.evaluation import evaluation_report
from okyaku.predictions.explain import (
    ExplanationRequest,
    ExplanationWriter,
    PredictionTarget,
    with_explanation,
    write_explanation,
)
from okyaku.predictions.factors import ScoredRow
from okyaku.predictions.forecast import OpenDeal, simulate_pipeline
from okyaku.predictions.models import CurrentPrediction, Prediction, PredictionModel
from okyaku.predictions.priors import PriorModel
from okyaku.predictions.scoring import score_dataset
from okyaku.predictions.store import (
    PredictionRecord,
    latest_model,
    load_artefact,
    model_history,
    save_classifier,
    save_regressor,
    store_predictions,
)
from okyaku.predictions.tabular import Dataset
from okyaku.predictions.training import (
    ClassifierModel,
    RegressorModel,
    TrainingConfig,
    train_classifier,
    train_regressor,
)
from okyaku.runtime import Runtime
from okyaku.tenancy import list_organization_ids

logger = logging.getLogger(__name__)

ModelTarget = Literal["lead", "churn", "deal"]
PREDICTION_OF: dict[str, PredictionTarget] = {"lead": "lead_score", "churn": "churn_risk", "deal": "deal_forecast"}
ENTITY_OF = {"lead": "contact", "churn": "contact", "deal": "deal"}
SCORING_TARGETS: tuple[ModelTarget, ...] = ("lead", "churn")
FORECASTING_TARGETS: tuple[ModelTarget, ...] = ("deal",)
BATCH_CHUNK = 5000
BATCH_FACTORS = 5
CYCLE_DEFAULT_DAYS = (30.0, 7.0, 90.0)  # median, P10, P90 when no deal has ever been won


def utc_now() -> datetime:
    return datetime.now(UTC)


def churn_level(score: float) -> str:
    if score >= 50:
        return "high"
    return "medium" if score >= 20 else "low"


@dataclass
class LoadedModel:
    target: ModelTarget
    version: int
    method: str
    algorithm: str
    scorer: ClassifierModel | PriorModel
    metrics: dict[str, Any]
    n_test: int
    degraded: bool = False  # a stored model could not be loaded: the prior stands in

    def confidence(self) -> str:
        auc = self.metrics.get("auc")
        if self.method != "model" or auc is None or self.degraded:
            return "low"
        if auc >= 0.75 and self.n_test >= 50:
            return "high"
        return "medium" if auc >= 0.65 else "low"


@dataclass
class ModelSummary:
    target: str
    version: int
    method: str
    algorithm: str
    trained_at: datetime
    n_examples: int
    n_positive: int
    n_train: int
    n_test: int
    metrics: dict[str, Any]
    features: list[Any]
    excluded_features: list[Any]

    @classmethod
    def of(cls, row: PredictionModel) -> ModelSummary:
        return cls(
            target=row.target,
            version=row.version,
            method=row.method,
            algorithm=row.algorithm,
            trained_at=row.trained_at,
            n_examples=row.n_examples,
            n_positive=row.n_positive,
            n_train=row.n_train,
            n_test=row.n_test,
            metrics=row.metrics,
            features=row.features,
            excluded_features=row.excluded_features,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "version": self.version,
            "method": self.method,
            "algorithm": self.algorithm,
            "trained_at": self.trained_at.isoformat(),
            "n_examples": self.n_examples,
            "n_positive": self.n_positive,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "metrics": self.metrics,
            "features": self.features,
            "excluded_features": self.excluded_features,
        }


# --- training -------------------------------------------------------------------------------------


def train_target(
    session: Session, target: ModelTarget, *, config: TrainingConfig | None = None, now: datetime | None = None
) -> list[PredictionModel]:
    """Train (or decide for the prior) and store; deals also get amount and time-to-close models."""
    config = config or TrainingConfig()
    now = now or utc_now()
    dataset = feats.training_dataset(session, target, now, keep_scoring_only=True)
    outcome = train_classifier(
        dataset.without(feats.SCORING_ONLY),
        config,
        excluded=list(feats.DESIGN_EXCLUSIONS[target]),
        prior=_prior_scores(target, dataset),
    )
    rows = [save_classifier(session, target, outcome)]
    if target == "deal":
        amounts = feats.regression_dataset(session, "amount")
        median_amount = float(np.median(amounts.targets)) if amounts.targets is not None and len(amounts) else 0.0
        rows.append(
            save_regressor(
                session,
                "deal_amount",
                train_regressor(amounts, config.seed, default=(median_amount, median_amount, median_amount)),
            )
        )
        cycle = feats.regression_dataset(session, "cycle")
        rows.append(
            save_regressor(session, "deal_cycle", train_regressor(cycle, config.seed, default=CYCLE_DEFAULT_DAYS))
        )
    return rows


def evaluate_target(session: Session, target: ModelTarget, config: TrainingConfig, now: datetime) -> dict[str, Any]:
    """Train and evaluate without storing anything (``okyaku model evaluate --target``)."""
    dataset = feats.training_dataset(session, target, now, keep_scoring_only=True)
    outcome = train_classifier(
        dataset.without(feats.SCORING_ONLY),
        dataclasses.replace(config, refit_on_all=False),
        excluded=list(feats.DESIGN_EXCLUSIONS[target]),
        prior=_prior_scores(target, dataset),
    )
    return evaluation_report(outcome)


def _prior_scores(target: ModelTarget, full: Dataset) -> Callable[[Dataset], Any]:
    """The prior's scores of the labelled examples (its rules may read scoring-only features)."""

    def score(_: Dataset) -> Any:
        labels = full.labels if full.labels is not None else np.zeros(0)
        return PriorModel.for_target(target, int(labels.sum()), len(labels)).predict(full)

    return score


def load_model(session: Session, target: ModelTarget, *, now: datetime | None = None) -> LoadedModel:
    """The organization's current model for ``target``; trained on first use."""
    row = latest_model(session, target)
    if row is None:
        row = train_target(session, target, now=now)[0]
    prior = PriorModel.for_target(
        target, positives=row.n_positive, examples=row.n_examples, reason=str(row.metrics.get("reason", ""))
    )
    if row.method == "prior":
        return LoadedModel(target, row.version, "prior", "rules", prior, row.metrics, row.n_test)
    try:
        model = load_artefact(session, row)
    except Exception as error:  # e.g. an artefact from an incompatible scikit-learn
        logger.error("model %s v%s could not be loaded; serving the prior: %s", target, row.version, error)
        prior.reason = "the trained model could not be loaded"
        return LoadedModel(target, row.version, "prior", "rules", prior, row.metrics, row.n_test, degraded=True)
    return LoadedModel(target, row.version, "model", row.algorithm, model, row.metrics, row.n_test)


def load_regressor(session: Session, target: str) -> tuple[RegressorModel | None, str]:
    row = latest_model(session, target)
    if row is None:
        return None, "none"
    try:
        return load_artefact(session, row), row.method
    except Exception as error:
        logger.error("%s model could not be loaded: %s", target, error)
        return None, "none"


# --- scoring ----------------------------------------------------------------------------------------


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


@dataclass
class DealOutlook:
    amount: float
    amount_low: float
    amount_high: float
    amount_source: str
    close_days: float
    close_days_low: float
    close_days_high: float
    close_source: str
    stage: str
    expected_close_date: date | None


def deal_outlooks(session: Session, dataset: Dataset, today: date) -> list[DealOutlook]:
    """Amount and close-date estimates for open deals (rows of ``dataset``, features as of now)."""
    if not len(dataset):
        return []
    amount_model, amount_method = load_regressor(session, "deal_amount")
    cycle_model, cycle_method = load_regressor(session, "deal_cycle")
    ids = [uuid.UUID(i) for i in dataset.ids]
    deals = {d.id: d for d in session.scalars(select(Deal).where(Deal.id.in_(ids)))}
    n = len(dataset)
    amounts = amount_model.predict(dataset) if amount_model else (np.zeros(n), np.zeros(n), np.zeros(n))
    default = CYCLE_DEFAULT_DAYS
    cycles = (
        cycle_model.predict(dataset)
        if cycle_model
        else (np.full(n, default[0]), np.full(n, default[1]), np.full(n, default[2]))
    )
    outlooks = []
    for i, deal_id in enumerate(ids):
        deal = deals[deal_id]
        if deal.amount is not None:
            amount = float(deal.amount)
            low = high = amount
            amount_source = "deal"
        else:
            amount, low, high = float(amounts[0][i]), float(amounts[1][i]), float(amounts[2][i])
            amount_source = amount_method if amount_model else "none"
        days, days_low, days_high = float(cycles[0][i]), float(cycles[1][i]), float(cycles[2][i])
        close_source = cycle_method if cycle_model else "default"
        expected = deal.expected_close_date
        if expected is not None and expected >= today and close_source != "model":
            # Without a learnt cycle, the rep's date is the best point estimate.
            days = float((expected - today).days)
            days_low, days_high = min(days_low, days), max(days_high, days)
            close_source = "expected_close_date"
        outlooks.append(
            DealOutlook(
                amount=amount,
                amount_low=min(low, amount),
                amount_high=max(high, amount),
                amount_source=amount_source,
                close_days=max(days, 0.0),
                close_days_low=max(min(days_low, days), 0.0),
                close_days_high=max(days_high, days),
                close_source=close_source,
                stage=str(dataset.columns["stage"][i] or "(unknown)"),
                expected_close_date=expected,
            )
        )
    return outlooks


def _round(value: float) -> float:
    return round(value, 2) if math.isfinite(value) else 0.0


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


def _deal_fields(scored: ScoredRow, outlook: DealOutlook, loaded: LoadedModel, today: date) -> dict[str, Any]:
    from okyaku.predictions.forecast import add_days

    probability = scored.probability
    warnings = []
    if outlook.expected_close_date is not None and outlook.expected_close_date < today:
        warnings.append(f"the expected close date ({outlook.expected_close_date.isoformat()}) has passed")
    return {
        "close_probability": round(probability, 4),
        "predicted_amount": _round(outlook.amount),
        "amount_interval": {"p10": _round(outlook.amount_low), "p90": _round(outlook.amount_high)},
        "amount_source": outlook.amount_source,
        "expected_value": _round(probability * outlook.amount),
        "predicted_close_date": add_days(today, outlook.close_days).isoformat(),
        "close_date_interval": {
            "p10": add_days(today, outlook.close_days_low).isoformat(),
            "p90": add_days(today, outlook.close_days_high).isoformat(),
        },
        "close_date_source": outlook.close_source,
        "expected_close_date": None if outlook.expected_close_date is None else outlook.expected_close_date.isoformat(),
        "stage": outlook.stage,
        "confidence": loaded.confidence(),
        "risk_factors": [f.as_dict() for f in scored.factors if f.impact < 0][:5],
        "warnings": warnings,
    }


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
                    payload.update(_deal_fields(scored, outlooks[i], loaded, today))
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


# --- the service -------------------------------------------------------------------------------------


@dataclass
class RescoreReport:
    organizations: int = 0
    trained: dict[str, int] = field(default_factory=dict)
    scored: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "organizations": self.organizations,
            "trained": self.trained,
            "scored": self.scored,
            "errors": self.errors,
        }


class PredictionService:
    """Entry points used by the HTTP API, the CLI and the triggers. Each call is one or a few
    organization-scoped transactions through the runtime."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        writer: ExplanationWriter | None = None,
        clock: Callable[[], datetime] = utc_now,
        config: TrainingConfig | None = None,
    ) -> None:
        self.runtime = runtime
        self.writer = writer
        self.clock = clock
        self.config = config or TrainingConfig()

    # --- training ---
    def train(self, organization_id: uuid.UUID, target: ModelTarget) -> list[ModelSummary]:
        with self.runtime.transaction(organization_id) as session:
            return [ModelSummary.of(r) for r in train_target(session, target, config=self.config, now=self.clock())]

    def models(self, organization_id: uuid.UUID) -> list[ModelSummary]:
        with self.runtime.transaction(organization_id) as session:
            rows = [latest_model(session, t) for t in ("lead", "churn", "deal", "deal_amount", "deal_cycle")]
            return [ModelSummary.of(r) for r in rows if r is not None]

    def model_versions(self, organization_id: uuid.UUID, target: str | None, limit: int) -> list[ModelSummary]:
        with self.runtime.transaction(organization_id) as session:
            return [ModelSummary.of(r) for r in model_history(session, target, limit)]

    # --- one entity ---
    def lead_score(self, organization_id: uuid.UUID, contact_id: uuid.UUID) -> dict[str, Any]:
        return self._score_one(organization_id, "lead", contact_id)

    def churn_risk(self, organization_id: uuid.UUID, contact_id: uuid.UUID) -> dict[str, Any]:
        return self._score_one(organization_id, "churn", contact_id)

    def deal_forecast(self, organization_id: uuid.UUID, deal_id: uuid.UUID) -> dict[str, Any]:
        return self._score_one(organization_id, "deal", deal_id)

    def _score_one(self, organization_id: uuid.UUID, target: ModelTarget, entity_id: uuid.UUID) -> dict[str, Any]:
        now = self.clock()
        with self.runtime.transaction(organization_id) as session:
            _check_population(session, target, entity_id)
            payloads = score_and_store(session, target, [entity_id], now=now, writer=self.writer or _NO_WRITER)
        return payloads[0]

    # --- many entities ---
    def rescore_all(self, organization_id: uuid.UUID, target: ModelTarget) -> int:
        now = self.clock()
        with self.runtime.transaction(organization_id) as session:
            ids = feats.scoring_population(session, target)
            loaded = load_model(session, target, now=now)
        scored = 0
        for start in range(0, len(ids), BATCH_CHUNK):
            with self.runtime.transaction(organization_id) as session:
                scored += len(
                    score_and_store(session, target, ids[start : start + BATCH_CHUNK], now=now, loaded=loaded)
                )
        return scored

    def batch_scores(
        self,
        organization_id: uuid.UUID,
        *,
        target: Literal["lead", "churn"] = "lead",
        limit: int = 50,
        cursor: str | None = None,
        sort: str = "-score",
        min_score: float | None = None,
    ) -> dict[str, Any]:
        """Every open lead (or customer) with its current score, scoring those never scored or
        scored by an older model first."""
        if sort not in _BATCH_SORTS:
            raise ValidationFailed(
                f"cannot sort by {sort!r}", details=[field_error("sort", f"one of {', '.join(_BATCH_SORTS)}")]
            )
        now = self.clock()
        with self.runtime.transaction(organization_id) as session:
            loaded = load_model(session, target, now=now)
            stale = _unscored(session, target, loaded.version)
        for start in range(0, len(stale), BATCH_CHUNK):
            with self.runtime.transaction(organization_id) as session:
                score_and_store(session, target, stale[start : start + BATCH_CHUNK], now=now, loaded=loaded)
        with self.runtime.transaction(organization_id) as session:
            return _batch_page(session, target, loaded, limit, cursor, sort, min_score, freshly_scored=len(stale))

    def pipeline_forecast(
        self,
        organization_id: uuid.UUID,
        *,
        months: int = 6,
        simulations: int = 5000,
        seed: int = 0,
        pipeline_id: uuid.UUID | None = None,
    ) -> dict[str, Any]:
        now = self.clock()
        with self.runtime.transaction(organization_id) as session:
            ids = feats.scoring_population(session, "deal")
            if pipeline_id is not None:
                ids = list(session.scalars(select(Deal.id).where(Deal.id.in_(ids), Deal.pipeline_id == pipeline_id)))
            loaded = load_model(session, "deal", now=now)
            dataset = feats.deal_features(session, [(i, now) for i in ids])
            probabilities = [r.probability for r in score_dataset(loaded.scorer, dataset, max_factors=0)]
            outlooks = deal_outlooks(session, dataset, now.date())
        deals = [
            OpenDeal(
                deal_id=dataset.ids[i],
                stage=o.stage,
                probability=probabilities[i],
                amount=o.amount,
                amount_low=o.amount_low,
                amount_high=o.amount_high,
                close_days=o.close_days,
                close_days_low=o.close_days_low,
                close_days_high=o.close_days_high,
            )
            for i, o in enumerate(outlooks)
        ]
        result = simulate_pipeline(deals, today=now.date(), months=months, simulations=simulations, seed=seed)
        result.update(
            {
                "method": loaded.method,
                "model_version": loaded.version,
                "deals_without_amount": sum(1 for o in outlooks if o.amount_source == "none"),
                "degraded": loaded.degraded,
            }
        )
        return result

    def history(
        self, organization_id: uuid.UUID, entity_type: str, entity_id: uuid.UUID, *, target: str | None, limit: int
    ) -> dict[str, Any]:
        with self.runtime.transaction(organization_id) as session:
            statement = (
                select(Prediction)
                .where(Prediction.entity_type == entity_type, Prediction.entity_id == entity_id)
                .order_by(Prediction.created_at.desc(), Prediction.id)
                .limit(limit)
            )
            if target:
                statement = statement.where(Prediction.target == target)
            rows = list(session.scalars(statement))
            if not rows:
                model = Deal if entity_type == "deal" else Contact
                if session.get(model, entity_id) is None:
                    raise NotFound(f"{entity_type} {entity_id} not found", details={"id": str(entity_id)})
            return {
                "entity_type": entity_type,
                "entity_id": str(entity_id),
                "data": [
                    {
                        "prediction_id": str(r.id),
                        "target": r.target,
                        "score": r.score,
                        "method": r.method,
                        "model_version": r.model_version,
                        "created_at": r.created_at.isoformat(),
                        "payload": with_explanation(r.payload),
                    }
                    for r in rows
                ],
            }

    # --- triggers ---
    def nightly(self, targets: Sequence[ModelTarget]) -> RescoreReport:
        """Retrain and rescore every organization; one organization failing does not stop the rest."""
        report = RescoreReport()
        for organization_id in list_organization_ids(self.runtime.db):
            report.organizations += 1
            for target in targets:
                try:
                    self.train(organization_id, target)
                    report.trained[target] = report.trained.get(target, 0) + 1
                    count = self.rescore_all(organization_id, target)
                    report.scored[target] = report.scored.get(target, 0) + count
                except Exception as error:
                    logger.exception("nightly %s failed for organization %s", target, organization_id)
                    report.errors.append(f"{organization_id} {target}: {error}")
        return report

    def on_change(self, event: ChangeEvent, targets: Sequence[ModelTarget]) -> list[str]:
        """Rescore what a record change affects; returns what happened, for logs and tests.

        Idempotent: an entity whose inputs hash the same as when it was last scored is skipped,
        which absorbs redelivered events and bursts of changes alike."""
        if event.operation == "deleted":
            return [f"skipped: {event.entity_type} deleted"]
        now = self.clock()
        outcomes = []
        with self.runtime.transaction(event.organization_id) as session:
            for target, entity_id in _affected(session, event, targets):
                scored = score_and_store(
                    session, target, [entity_id], now=now, event_id=event.event_id, skip_unchanged=True
                )
                outcomes.append(f"{'scored' if scored else 'unchanged'}: {target} {entity_id}")
        return outcomes or [f"skipped: nothing to rescore for {event.entity_type} {event.entity_id}"]


class _NoWriter:
    """No LLM configured: the template, reported as degraded."""

    def write(self, request: ExplanationRequest) -> None:
        return None


_NO_WRITER = _NoWriter()

_BATCH_SORTS = ("-score", "score", "-scored_at", "scored_at")
_POPULATION_SQL = {"lead": feats.OPEN_LEAD_SQL, "churn": feats.CUSTOMER_SQL}


def _check_population(session: Session, target: ModelTarget, entity_id: uuid.UUID) -> None:
    """Refuse what the score does not apply to, saying which score does."""
    if target == "deal":
        deal = session.get(Deal, entity_id)
        if deal is None:
            raise NotFound(f"deal {entity_id} not found", details={"id": str(entity_id)})
        if deal.status != "open":
            raise ValidationFailed(
                f"deal {entity_id} is already {deal.status}",
                details=[field_error("deal_id", f"the deal is closed ({deal.status}); only open deals are forecast")],
            )
        return
    contact = session.get(Contact, entity_id)
    if contact is None:
        raise NotFound(f"contact {entity_id} not found", details={"id": str(entity_id)})
    customer = contact.lifecycle_stage in ("customer", "evangelist")
    if target == "lead" and (customer or contact.lifecycle_stage == "churned"):
        raise ValidationFailed(
            "lead scores are for contacts who are not customers yet",
            details=[field_error("contact_id", f"lifecycle_stage is {contact.lifecycle_stage}; use churn-risk")],
        )
    if target == "churn" and not customer:
        raise ValidationFailed(
            "churn risk is for current customers",
            details=[field_error("contact_id", f"lifecycle_stage is {contact.lifecycle_stage}; use lead-score")],
        )


def _unscored(session: Session, target: ModelTarget, version: int) -> list[uuid.UUID]:
    rows = session.scalars(
        text(
            f"SELECT c.id FROM contacts c WHERE {_POPULATION_SQL[target]} AND NOT EXISTS ("
            "  SELECT 1 FROM current_predictions cp WHERE cp.target = :target AND cp.entity_id = c.id"
            "  AND cp.model_version = :version) ORDER BY c.id"
        ),
        {"target": PREDICTION_OF[target], "version": version},
    )
    return list(rows)


def _batch_page(
    session: Session,
    target: ModelTarget,
    loaded: LoadedModel,
    limit: int,
    cursor: str | None,
    sort: str,
    min_score: float | None,
    *,
    freshly_scored: int,
) -> dict[str, Any]:
    column = "cp.score" if sort.endswith("score") else "cp.scored_at"
    descending = sort.startswith("-")
    conditions = ["cp.target = :target", _POPULATION_SQL[target]]
    params: dict[str, Any] = {"target": PREDICTION_OF[target], "limit": limit + 1}
    if min_score is not None:
        conditions.append("cp.score >= :min_score")
        params["min_score"] = min_score
    if cursor:
        cursor_sort, value, last_id = decode_cursor(cursor)
        if cursor_sort != sort:
            raise ValidationFailed(
                "the cursor belongs to another sort order",
                details=[field_error("cursor", f"this cursor was made for sort={cursor_sort}")],
            )
        cast = "float8" if column == "cp.score" else "timestamptz"
        try:  # the cursor is client input: its value must read as the sort column's type
            typed: float | datetime = float(value or "") if cast == "float8" else datetime.fromisoformat(value or "")
        except ValueError as error:
            raise invalid_cursor() from error
        conditions.append(f"({column}, cp.entity_id) {'<' if descending else '>'} (CAST(:value AS {cast}), :last_id)")
        params.update({"value": typed, "last_id": last_id})
    direction = "DESC" if descending else "ASC"
    rows = session.execute(
        text(
            f"""
            SELECT cp.entity_id, cp.score, cp.scored_at, cp.model_version, p.method, p.payload,
                   c.first_name, c.last_name, c.email, c.lifecycle_stage
              FROM current_predictions cp
              JOIN contacts c ON c.id = cp.entity_id
              JOIN predictions p ON p.id = cp.prediction_id
             WHERE {" AND ".join(conditions)}
             ORDER BY {column} {direction}, cp.entity_id {direction}
             LIMIT :limit
            """
        ),
        params,
    ).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(
            sort, last.score if column == "cp.score" else last.scored_at.isoformat(), last.entity_id
        )
    data = []
    for r in rows:
        payload = r.payload or {}
        item = {
            "contact_id": str(r.entity_id),
            "name": " ".join(p for p in (r.first_name, r.last_name) if p) or None,
            "email": r.email,
            "lifecycle_stage": r.lifecycle_stage,
            "score": r.score,
            "method": r.method,
            "model_version": r.model_version,
            "scored_at": r.scored_at.isoformat(),
            "sub_scores": payload.get("sub_scores", {}),
            "top_factors": payload.get("factors", [])[:3],
        }
        if target == "churn":
            item["level"] = payload.get("level")
        data.append(item)
    return {
        "target": PREDICTION_OF[target],
        "method": loaded.method,
        "model_version": loaded.version,
        "degraded": loaded.degraded,
        "freshly_scored": freshly_scored,
        "data": data,
        "next_cursor": next_cursor,
    }


def _affected(
    session: Session, event: ChangeEvent, targets: Sequence[ModelTarget]
) -> list[tuple[ModelTarget, uuid.UUID]]:
    """Which (target, entity) scores a record change can move, among ``targets``."""
    contacts: list[uuid.UUID] = []
    deals: list[uuid.UUID] = []
    if event.entity_type == "contact":
        contacts.append(event.entity_id)
    elif event.entity_type == "deal":
        deals.append(event.entity_id)
        contact_id = session.scalar(select(Deal.contact_id).where(Deal.id == event.entity_id))
        if contact_id is not None:
            contacts.append(contact_id)  # "deals opened so far" is a lead feature
    elif event.entity_type in ("activity", "task"):
        model: Any = Activity if event.entity_type == "activity" else Task
        row = session.execute(select(model.contact_id, model.deal_id).where(model.id == event.entity_id)).first()
        if row is not None:
            contacts += [row.contact_id] if row.contact_id else []
            deals += [row.deal_id] if row.deal_id else []
    elif event.entity_type == "company":
        company = session.get(Company, event.entity_id)
        if company is not None:
            contacts += list(session.scalars(select(Contact.id).where(Contact.company_id == company.id).limit(500)))
            deals += list(session.scalars(select(Deal.id).where(Deal.company_id == company.id).limit(500)))
    affected: list[tuple[ModelTarget, uuid.UUID]] = []
    if contacts:
        stages = dict(
            session.execute(select(Contact.id, Contact.lifecycle_stage).where(Contact.id.in_(contacts))).all()
        )
        for contact_id in contacts:
            stage = stages.get(contact_id)
            if stage is None:
                continue  # deleted since
            if stage in ("customer", "evangelist"):
                target: ModelTarget = "churn"
            elif stage == "churned":
                continue
            else:
                target = "lead"
            if target in targets:
                affected.append((target, contact_id))
    if deals and "deal" in targets:
        open_deals = session.scalars(
            text(
                "SELECT d.id FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id "
                "WHERE d.id = ANY(:ids) AND NOT s.is_won AND NOT s.is_lost"
            ),
            {"ids": deals},
        )
        affected += [("deal", deal_id) for deal_id in open_deals]
    return affected
