"""Evaluation a customer can run on their own data or any CSV: the same features and model
pipeline as production, a held-out 20 %, and the figures that say whether to trust the scores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from okyaku.predictions.tabular import read_csv_dataset
from okyaku.predictions.training import ClassifierOutcome, TrainingConfig, train_classifier


def evaluation_report(outcome: ClassifierOutcome) -> dict[str, Any]:
    metrics = dict(outcome.metrics)
    return {
        "method": outcome.method,
        "algorithm": outcome.algorithm,
        "auc": metrics.pop("auc", None),
        "brier": metrics.pop("brier", None),
        "n_examples": outcome.n_examples,
        "n_positive": outcome.n_positive,
        "n_train": outcome.n_train,
        "n_test": outcome.n_test,
        **metrics,
        "excluded_features": [e.as_dict() for e in outcome.excluded],
    }


def evaluate_csv(path: str, *, label: str, positive: str, drop: Sequence[str] = (), seed: int = 7) -> dict[str, Any]:
    """Train on a stratified 80 % (seeded) of the CSV's rows and report on the other 20 %."""
    dataset, excluded = read_csv_dataset(path, label=label, positive=positive, drop=drop)
    outcome = train_classifier(dataset, TrainingConfig(seed=seed, refit_on_all=False), excluded=excluded)
    return evaluation_report(outcome)
