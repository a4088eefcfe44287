"""Training: model choice by validation, calibration, holdout metrics, the leakage screen.

scikit-learn is imported inside the functions that need it: importing this module is cheap, so
an HTTP cold start that only serves stored scores never pays for it.

The calibrated classifier itself is in ``classifier.py``; artefacts stored before it moved name
``okyaku.predictions.training.ClassifierModel`` and ``.Calibrator``, which still resolve here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from okyaku.predictions.classifier import (
    PROBABILITY_FLOOR,
    Algorithm,
    Calibrator,
    ClassifierModel,
    IntArray,
)
from okyaku.predictions.scoring import feature_impacts
from okyaku.predictions.tabular import (
    Dataset,
    ExcludedFeature,
    FeatureSpec,
    FloatArray,
    TabularEncoder,
    uninformative,
)

MIN_EXAMPLES = 200
MIN_POSITIVES = 20
LEAK_AUC = 0.98  # one feature alone separating outcomes this well is almost always derived from them


@dataclass(frozen=True)
class TrainingConfig:
    seed: int = 7
    holdout_fraction: float = 0.2
    min_examples: int = MIN_EXAMPLES
    min_positives: int = MIN_POSITIVES
    candidates: tuple[Algorithm, ...] = ("logistic", "gradient_boosting")
    # Boosting rarely beats a regularised linear model on a few hundred examples, and costs more.
    min_examples_for_boosting: int = 1000
    # Below this many examples the stored model is refit on all of them (its figures come from the
    # holdout run); above, the evaluated model is stored as is: 80 % is plenty, and it is cheaper.
    refit_on_all: bool = True
    refit_below: int = 20_000


# --- splits ---------------------------------------------------------------------------------


def stratified_holdout(labels: IntArray, seed: int, fraction: float = 0.2) -> tuple[IntArray, IntArray]:
    """The same split for our pipeline and for any baseline compared with it."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)


def holdout_split(dataset: Dataset, config: TrainingConfig) -> tuple[IntArray, IntArray, str]:
    """Time-based (the latest examples held out) when every example has a time, else stratified."""
    assert dataset.labels is not None
    labels = dataset.labels
    if dataset.times is not None and all(t is not None for t in dataset.times):
        order = np.argsort(np.array([t.timestamp() for t in dataset.times]), kind="stable")
        cut = len(order) - max(1, round(len(order) * config.holdout_fraction))
        train, test = np.sort(order[:cut]), np.sort(order[cut:])
        test_labels = labels[test]
        if min(int(test_labels.sum()), int(len(test_labels) - test_labels.sum())) >= 5:
            return train, test, f"time-based: latest {config.holdout_fraction:.0%}"
    train, test = stratified_holdout(labels, config.seed, config.holdout_fraction)
    return train, test, f"stratified {config.holdout_fraction:.0%} (seed {config.seed})"


# --- leakage --------------------------------------------------------------------------------


def screen_leaks(dataset: Dataset, seed: int, threshold: float = LEAK_AUC) -> list[ExcludedFeature]:
    """Features that alone separate the outcome almost perfectly: derived from it, not predictive of it."""
    assert dataset.labels is not None
    labels = dataset.labels
    positives = int(labels.sum())
    if positives < 10 or len(labels) - positives < 10:
        return []
    from sklearn.metrics import roc_auc_score

    found = []
    for spec in dataset.specs:
        scores = _univariate_scores(spec, dataset.columns[spec.name], labels, seed)
        if scores is None or np.all(scores == scores[0]):
            continue
        auc = float(roc_auc_score(labels, scores))
        separation = max(auc, 1 - auc)
        if separation >= threshold:
            found.append(ExcludedFeature(spec.name, f"leak: alone it separates the outcome (AUC {separation:.3f})"))
    return found


def _univariate_scores(spec: FeatureSpec, values: list[Any], labels: IntArray, seed: int) -> FloatArray | None:
    if spec.kind != "categorical":
        encoder = TabularEncoder().fit(Dataset([spec], {spec.name: values}, [""] * len(values)))
        numbers = encoder.transform_columns({spec.name: values}, len(values))[:, 0]
        known = ~np.isnan(numbers)
        if not known.any():
            return None
        # Unknown values rank below every known one: "only set when it happened" is a leak too.
        return np.where(known, numbers, np.nanmin(numbers) - 1.0)
    # Categories: out-of-fold outcome rates, so a per-row identifier cannot look predictive.
    rng = np.random.default_rng(seed)
    folds = rng.integers(0, 2, size=len(values))
    keys = ["" if v is None else str(v) for v in values]
    scores = np.empty(len(values))
    prior = float(labels.mean())
    for fold in (0, 1):
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        for key, label, f in zip(keys, labels, folds, strict=True):
            if f != fold:
                sums[key] = sums.get(key, 0.0) + float(label)
                counts[key] = counts.get(key, 0) + 1
        for i in np.flatnonzero(folds == fold):
            n = counts.get(keys[i], 0)
            scores[i] = (sums.get(keys[i], 0.0) + prior * 2) / (n + 2)
    return scores


# --- metrics --------------------------------------------------------------------------------


def classification_metrics(labels: IntArray, probabilities: FloatArray) -> dict[str, Any]:
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    labels = np.asarray(labels)
    p = np.clip(np.asarray(probabilities, dtype=float), PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    both = 0 < labels.sum() < len(labels)
    base_rate = float(labels.mean()) if len(labels) else 0.0
    deciles = calibration_by_decile(labels, p)
    top = deciles[-1]["observed_rate"] if deciles else 0.0
    return {
        "auc": round(float(roc_auc_score(labels, p)), 4) if both else None,
        "brier": round(float(brier_score_loss(labels, p)), 4) if len(labels) else None,
        "log_loss": round(float(log_loss(labels, p, labels=[0, 1])), 4) if len(labels) else None,
        "base_rate": round(base_rate, 4),
        "mean_predicted": round(float(p.mean()), 4) if len(p) else None,
        "lift_top_decile": round(top / base_rate, 3) if base_rate > 0 and deciles else None,
        "expected_calibration_error": round(
            sum(d["n"] * abs(d["mean_predicted"] - d["observed_rate"]) for d in deciles) / max(len(labels), 1), 4
        ),
        "calibration_by_decile": deciles,
    }


def calibration_by_decile(labels: IntArray, probabilities: FloatArray) -> list[dict[str, Any]]:
    """Predicted vs observed rate in ten equal-count bins of the predicted probability."""
    if len(labels) < 10:
        return []
    order = np.argsort(probabilities, kind="stable")
    result = []
    for decile, chunk in enumerate(np.array_split(order, 10), start=1):
        result.append(
            {
                "decile": decile,
                "n": len(chunk),
                "mean_predicted": round(float(probabilities[chunk].mean()), 4),
                "observed_rate": round(float(labels[chunk].mean()), 4),
            }
        )
    return result


# --- training -------------------------------------------------------------------------------


@dataclass
class ClassifierOutcome:
    """What training decided: a calibrated model, or (too little history) the prior."""

    method: Literal["model", "prior"]
    model: ClassifierModel | None
    algorithm: str
    n_examples: int
    n_positive: int
    n_train: int
    n_test: int
    metrics: dict[str, Any]
    features: list[FeatureSpec]
    excluded: list[ExcludedFeature] = field(default_factory=list)


def _estimator(algorithm: Algorithm, n_rows: int, seed: int) -> Any:
    if algorithm == "logistic":
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        return Pipeline(
            [
                ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("model", LogisticRegression(C=0.5, max_iter=2000)),
            ]
        )
    from sklearn.ensemble import HistGradientBoostingClassifier

    large = n_rows >= 2000
    return HistGradientBoostingClassifier(
        max_iter=300 if large else 80,
        learning_rate=0.06 if large else 0.1,
        max_leaf_nodes=15,
        min_samples_leaf=20,
        l2_regularization=1.0,
        early_stopping=large,
        validation_fraction=0.15,
        n_iter_no_change=20,
        random_state=seed,
    )


@dataclass
class _CrossFit:
    encoder: TabularEncoder
    matrix: FloatArray
    out_of_fold: FloatArray  # raw scores of each row by a model that did not learn from it


def _cross_fit(dataset: Dataset, algorithm: Algorithm, seed: int, folds: int = 3) -> _CrossFit:
    from sklearn.model_selection import StratifiedKFold

    assert dataset.labels is not None
    labels = dataset.labels
    encoder = TabularEncoder().fit(dataset)
    matrix = encoder.transform(dataset)
    out_of_fold = np.empty(len(labels))
    for fit_idx, held_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(matrix, labels):
        fold = _estimator(algorithm, len(fit_idx), seed).fit(matrix[fit_idx], labels[fit_idx])
        out_of_fold[held_idx] = np.asarray(fold.decision_function(matrix[held_idx]), dtype=float).reshape(-1)
    return _CrossFit(encoder, matrix, out_of_fold)


def _fit_calibrated(
    dataset: Dataset, algorithm: Algorithm, seed: int, cross: _CrossFit | None = None
) -> ClassifierModel:
    """Fit on every row; calibrate on the out-of-fold scores (never on rows a model learnt from),
    so no data is set aside for calibration alone."""
    assert dataset.labels is not None
    labels = dataset.labels
    cross = cross or _cross_fit(dataset, algorithm, seed)
    estimator = _estimator(algorithm, len(labels), seed).fit(cross.matrix, labels)
    positives = int(labels.sum())
    isotonic = algorithm != "logistic" and len(labels) >= 2000 and min(positives, len(labels) - positives) >= 100
    calibrator = Calibrator("isotonic" if isotonic else "sigmoid").fit(cross.out_of_fold, labels)
    return ClassifierModel(cross.encoder, algorithm, estimator, calibrator)


def _select_algorithm(dataset: Dataset, config: TrainingConfig) -> tuple[Algorithm, dict[str, Any], _CrossFit | None]:
    """Compare candidates by 3-fold out-of-fold log loss (after calibration); prefer the simpler
    logistic model unless boosting is clearly better."""
    from sklearn.metrics import log_loss, roc_auc_score

    assert dataset.labels is not None
    labels = dataset.labels
    candidates = (
        tuple(
            c for c in config.candidates if c != "gradient_boosting" or len(dataset) >= config.min_examples_for_boosting
        )
        or config.candidates[:1]
    )
    if len(candidates) == 1:
        return candidates[0], {}, None
    scores: dict[str, Any] = {}
    fits: dict[str, _CrossFit] = {}
    for algorithm in candidates:
        fits[algorithm] = _cross_fit(dataset, algorithm, config.seed)
        raw = fits[algorithm].out_of_fold
        calibrated = Calibrator("sigmoid").fit(raw, labels).predict(raw)
        scores[algorithm] = {
            "cv_log_loss": round(float(log_loss(labels, calibrated, labels=[0, 1])), 5),
            "cv_auc": round(float(roc_auc_score(labels, raw)), 4),
        }
    chosen: Algorithm = candidates[0]
    for algorithm in candidates[1:]:
        if scores[algorithm]["cv_log_loss"] < scores[chosen]["cv_log_loss"] * 0.995:
            chosen = algorithm
    return chosen, scores, fits[chosen]


def train_classifier(
    dataset: Dataset,
    config: TrainingConfig | None = None,
    *,
    excluded: list[ExcludedFeature] | None = None,
    prior: Callable[[Dataset], FloatArray] | None = None,
) -> ClassifierOutcome:
    """Train, choose, calibrate and evaluate; below the history threshold, decide for the prior
    (``prior`` scores the labelled examples so that its figures are reported too; without one,
    the base rate)."""
    config = config or TrainingConfig()
    assert dataset.labels is not None
    excluded = list(excluded or [])
    labels = dataset.labels
    n, positives = len(labels), int(labels.sum())
    negatives = n - positives
    if n < config.min_examples or min(positives, negatives) < config.min_positives:
        reason = (
            f"{n} labelled examples with {positives} positive and {negatives} negative; a model needs "
            f"{config.min_examples} with {config.min_positives} of each"
        )
        metrics: dict[str, Any] = {"reason": reason, "holdout": "none: the prior is not trained, all examples test it"}
        if n >= 10:
            scores = prior(dataset) if prior is not None else np.full(n, positives / n)
            metrics = {**classification_metrics(labels, scores), **metrics}
        return ClassifierOutcome(
            method="prior",
            model=None,
            algorithm="rules",
            n_examples=n,
            n_positive=positives,
            n_train=0,
            n_test=n,
            metrics=metrics,
            features=list(dataset.specs),
            excluded=excluded,
        )
    train_idx, test_idx, holdout_kind = holdout_split(dataset, config)
    train_part, test_part = dataset.subset(train_idx), dataset.subset(test_idx)
    leaks = screen_leaks(train_part, config.seed) + uninformative(train_part)
    excluded += leaks
    leaked = [e.name for e in leaks]
    train_part, test_part = train_part.without(leaked), test_part.without(leaked)
    algorithm, selection, cross = _select_algorithm(train_part, config)
    evaluated = _fit_calibrated(train_part, algorithm, config.seed, cross)
    assert test_part.labels is not None
    probabilities = evaluated.predict(test_part)
    metrics = classification_metrics(test_part.labels, probabilities)
    metrics.update(
        {
            "holdout": holdout_kind,
            "algorithm": algorithm,
            "calibration": evaluated.calibrator.method,
            "selection": selection,
            "top_factors": global_importance(evaluated, test_part),
        }
    )
    refit = config.refit_on_all and n < config.refit_below
    final = _fit_calibrated(dataset.without(leaked), algorithm, config.seed) if refit else evaluated
    return ClassifierOutcome(
        method="model",
        model=final,
        algorithm=algorithm,
        n_examples=n,
        n_positive=positives,
        n_train=len(train_idx),
        n_test=len(test_idx),
        metrics=metrics,
        features=list(final.specs),
        excluded=excluded,
    )


def global_importance(model: ClassifierModel, dataset: Dataset, top: int = 10) -> list[dict[str, Any]]:
    """Mean absolute score change (points) when a feature is set to its typical value, over ``dataset``."""
    impacts = feature_impacts(model, model.encoder.transform(dataset))
    ranked = sorted(
        ((spec, float(np.mean(np.abs(impacts[:, i])))) for i, spec in enumerate(model.specs)),
        key=lambda item: -item[1],
    )
    result = []
    for spec, size in ranked[:top]:
        column = impacts[:, model.specs.index(spec)]
        moved = column[np.abs(column) > 1e-9]
        result.append(
            {
                "feature": spec.name,
                "label": spec.text,
                "group": spec.group,
                "mean_abs_impact": round(size, 3),
                "share_raising": round(float((moved > 0).mean()), 3) if len(moved) else None,
            }
        )
    return result


# --- regression (deal amount, days to close) ---------------------------------------------------


class RegressorModel:
    """Predicts a positive quantity on the log scale; the interval comes from held-out residuals."""

    def __init__(
        self, encoder: TabularEncoder | None, estimator: Any, low: float, high: float, fallback: float
    ) -> None:
        self.encoder = encoder
        self.estimator = estimator
        self.low = low  # 10th percentile of log residuals
        self.high = high  # 90th percentile
        self.fallback = fallback  # median of the training targets

    def predict(self, dataset: Dataset) -> tuple[FloatArray, FloatArray, FloatArray]:
        if self.encoder is None or self.estimator is None:
            point = np.log1p(np.full(len(dataset), self.fallback))
        else:
            point = np.asarray(self.estimator.predict(self.encoder.transform(dataset)), dtype=float)
        return (
            np.maximum(np.expm1(point), 0.0),
            np.maximum(np.expm1(point + self.low), 0.0),
            np.maximum(np.expm1(point + self.high), 0.0),
        )


@dataclass
class RegressorOutcome:
    method: Literal["model", "prior"]
    model: RegressorModel
    n_examples: int
    n_train: int
    n_test: int
    metrics: dict[str, Any]
    features: list[FeatureSpec]


def train_regressor(
    dataset: Dataset,
    seed: int = 7,
    min_examples: int = 30,
    *,
    default: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> RegressorOutcome:
    """Gradient boosting on log(1 + y); too few examples: the median with the empirical 10-90 %
    range (``default`` = median, P10, P90 when there are none at all)."""
    assert dataset.targets is not None
    targets = np.maximum(np.asarray(dataset.targets, dtype=float), 0.0)
    n = len(targets)
    if n < min_examples:
        if n:
            logs = np.log1p(targets)
            median, low, high = (float(v) for v in np.quantile(logs, [0.5, 0.1, 0.9]))
        else:
            median, low, high = (float(np.log1p(v)) for v in default)
        model = RegressorModel(None, None, low - median, high - median, float(np.expm1(median)))
        return RegressorOutcome("prior", model, n, 0, n, {"reason": f"{n} examples; a model needs {min_examples}"}, [])
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import train_test_split

    index = np.arange(n)
    train_idx, test_idx = train_test_split(index, test_size=0.2, random_state=seed)
    fit_idx, cal_idx = train_test_split(train_idx, test_size=0.25, random_state=seed)
    logs = np.log1p(targets)

    def fit(rows: npt.NDArray[np.intp]) -> tuple[TabularEncoder, Any]:
        part = dataset.subset(rows)
        encoder = TabularEncoder().fit(part)
        estimator = HistGradientBoostingRegressor(
            max_iter=150, learning_rate=0.06, max_leaf_nodes=15, min_samples_leaf=10, random_state=seed
        ).fit(encoder.transform(part), logs[rows])
        return encoder, estimator

    encoder, estimator = fit(fit_idx)
    residuals = logs[cal_idx] - estimator.predict(encoder.transform(dataset.subset(cal_idx)))
    low, high = float(np.quantile(residuals, 0.1)), float(np.quantile(residuals, 0.9))
    evaluated = RegressorModel(encoder, estimator, low, high, float(np.median(targets)))
    point, lower, upper = evaluated.predict(dataset.subset(test_idx))
    actual = targets[test_idx]
    nonzero = actual > 0
    metrics = {
        "mae": round(float(np.mean(np.abs(point - actual))), 3),
        "median_abs_pct_error": round(float(np.median(np.abs(point - actual)[nonzero] / actual[nonzero])), 4)
        if nonzero.any()
        else None,
        "interval_coverage_p10_p90": round(float(np.mean((actual >= lower) & (actual <= upper))), 3),
        "holdout": f"random 20% (seed {seed})",
    }
    encoder, estimator = fit(np.concatenate([fit_idx, test_idx]))
    final = RegressorModel(encoder, estimator, low, high, float(np.median(targets)))
    return RegressorOutcome("model", final, n, len(train_idx), len(test_idx), metrics, list(encoder.specs))
