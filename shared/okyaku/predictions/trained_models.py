"""Training per organization and target, and loading the model that scores now (trained on first
use; the prior when there is too little history or a stored model cannot be loaded)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from okyaku.clock import utc_now
from okyaku.predictions import features as feats
from okyaku.predictions.classifier import ClassifierModel
from okyaku.predictions.evaluation import evaluation_report
from okyaku.predictions.models import PredictionModel
from okyaku.predictions.priors import PriorModel
from okyaku.predictions.store import latest_model, load_artefact, lock_training, save_classifier, save_regressor
from okyaku.predictions.tabular import Dataset
from okyaku.predictions.targets import ModelTarget
from okyaku.predictions.training import RegressorModel, TrainingConfig, train_classifier, train_regressor

logger = logging.getLogger(__name__)

CYCLE_DEFAULT_DAYS = (30.0, 7.0, 90.0)  # median, P10, P90 when no deal has ever been won


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
        lock_training(session, target)
        row = latest_model(session, target)  # trained meanwhile by a transaction that held the lock
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
