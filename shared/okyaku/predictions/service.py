"""The predictions service: the entry points of the HTTP API, the CLI and the triggers (nightly
retrain and rescore, record-change events). The work is done by ``trained_models`` (training,
the current model), ``stored_scores`` (scoring and storing), ``outlooks`` (deal amounts and
close dates), ``populations`` (who a score is for) and ``batch_listing``."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select

from okyaku.clock import utc_now
from okyaku.db.models import Contact, Deal
from okyaku.errors import NotFound, ValidationFailed, field_error, public_error
from okyaku.events.model import ChangeEvent
from okyaku.predictions import features as feats
from okyaku.predictions.batch_listing import BATCH_SORTS, batch_page
from okyaku.predictions.examples import scoring_population
from okyaku.predictions.explain import ExplanationRequest, ExplanationWriter, with_explanation
from okyaku.predictions.forecast import OpenDeal, simulate_pipeline
from okyaku.predictions.models import Prediction
from okyaku.predictions.outlooks import deal_outlooks
from okyaku.predictions.populations import affected_by, check_population, unscored
from okyaku.predictions.schemas import ModelOut
from okyaku.predictions.scoring import score_dataset
from okyaku.predictions.store import latest_model, lock_scores, model_history
from okyaku.predictions.stored_scores import cyclic_gc_paused, input_hash, input_hashes, score_and_store
from okyaku.predictions.targets import (
    ENTITY_OF,
    FORECASTING_TARGETS,
    PREDICTION_OF,
    SCORING_TARGETS,
    ModelTarget,
    churn_level,
)
from okyaku.predictions.trained_models import LoadedModel, evaluate_target, load_model, train_target
from okyaku.predictions.training import TrainingConfig
from okyaku.runtime import Runtime
from okyaku.tenancy import list_organization_ids

# Names other code imports from here; each lives in the module named above.
__all__ = [
    "ENTITY_OF",
    "FORECASTING_TARGETS",
    "PREDICTION_OF",
    "SCORING_TARGETS",
    "LoadedModel",
    "ModelTarget",
    "PredictionService",
    "RescoreReport",
    "churn_level",
    "cyclic_gc_paused",
    "evaluate_target",
    "input_hash",
    "input_hashes",
    "load_model",
    "score_and_store",
    "train_target",
    "utc_now",
]

logger = logging.getLogger(__name__)

BATCH_CHUNK = 5000


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
    def train(self, organization_id: uuid.UUID, target: ModelTarget) -> list[ModelOut]:
        with self.runtime.transaction(organization_id) as session:
            return [
                ModelOut.model_validate(r) for r in train_target(session, target, config=self.config, now=self.clock())
            ]

    def models(self, organization_id: uuid.UUID) -> list[ModelOut]:
        with self.runtime.transaction(organization_id) as session:
            rows = [latest_model(session, t) for t in ("lead", "churn", "deal", "deal_amount", "deal_cycle")]
            return [ModelOut.model_validate(r) for r in rows if r is not None]

    def model_versions(self, organization_id: uuid.UUID, target: str | None, limit: int) -> list[ModelOut]:
        with self.runtime.transaction(organization_id) as session:
            return [ModelOut.model_validate(r) for r in model_history(session, target, limit)]

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
            check_population(session, target, entity_id)
            payloads = score_and_store(session, target, [entity_id], now=now, writer=self.writer or _NO_WRITER)
        return payloads[0]

    # --- many entities ---
    def rescore_all(self, organization_id: uuid.UUID, target: ModelTarget) -> int:
        now = self.clock()
        with self.runtime.transaction(organization_id) as session:
            ids = scoring_population(session, target)
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
        if sort not in BATCH_SORTS:
            raise ValidationFailed(
                f"cannot sort by {sort!r}", details=[field_error("sort", f"one of {', '.join(BATCH_SORTS)}")]
            )
        now = self.clock()
        with self.runtime.transaction(organization_id) as session:
            loaded = load_model(session, target, now=now)
            stale = unscored(session, target, loaded.version)
        for start in range(0, len(stale), BATCH_CHUNK):
            with self.runtime.transaction(organization_id) as session:
                score_and_store(session, target, stale[start : start + BATCH_CHUNK], now=now, loaded=loaded)
        with self.runtime.transaction(organization_id) as session:
            return batch_page(session, target, loaded, limit, cursor, sort, min_score, freshly_scored=len(stale))

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
            ids = scoring_population(session, "deal")
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
            self.nightly_for(organization_id, targets, report)
        return report

    def nightly_for(
        self, organization_id: uuid.UUID, targets: Sequence[ModelTarget], report: RescoreReport | None = None
    ) -> RescoreReport:
        """Retrain and rescore one organization (one message of the nightly fan-out)."""
        report = report or RescoreReport()
        report.organizations += 1
        for target in targets:
            try:
                self.train(organization_id, target)
                report.trained[target] = report.trained.get(target, 0) + 1
                count = self.rescore_all(organization_id, target)
                report.scored[target] = report.scored.get(target, 0) + count
            except Exception as error:
                logger.exception("nightly %s failed for organization %s", target, organization_id)
                report.errors.append(f"{organization_id} {target}: {public_error(error)['message']}")
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
            # One order for every writer (targets, then entities): the locks below never deadlock.
            affected = sorted(affected_by(session, event, targets), key=lambda pair: (pair[0], str(pair[1])))
            lock_scores(session, affected)  # a duplicate delivery handled at the same time waits here
            for target, entity_id in affected:
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
