"""The calibrated classifier: an encoder, an estimator and a calibrator, raw features in and
calibrated probabilities out; and how trained models are stored (joblib).

Trained artefacts pickle these classes by module path: ``okyaku.predictions.training`` keeps
importing them, so artefacts written before they moved here still load."""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from okyaku.predictions.tabular import Dataset, FeatureSpec, FloatArray, TabularEncoder

Algorithm = Literal["logistic", "gradient_boosting"]
IntArray = npt.NDArray[np.int64]

PROBABILITY_FLOOR = 1e-4


class Calibrator:
    """Maps a model's raw score (log-odds) to a probability. Monotone increasing either way, so
    calibration never flips the direction of a factor."""

    def __init__(self, method: Literal["sigmoid", "isotonic"]) -> None:
        self.method = method
        self.slope = 1.0
        self.intercept = 0.0
        self.isotonic: Any = None

    def fit(self, raw: FloatArray, labels: IntArray) -> Calibrator:
        from sklearn.linear_model import LogisticRegression

        if self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            self.isotonic = IsotonicRegression(
                out_of_bounds="clip", y_min=PROBABILITY_FLOOR, y_max=1 - PROBABILITY_FLOOR, increasing=True
            ).fit(raw, labels)
        else:
            platt = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), labels)
            self.slope = float(platt.coef_[0, 0])
            self.intercept = float(platt.intercept_[0])
        return self

    def logit(self, raw: FloatArray) -> FloatArray:
        if self.method == "isotonic":
            return logit(self.predict(raw))
        return self.slope * raw + self.intercept

    def predict(self, raw: FloatArray) -> FloatArray:
        if self.method == "isotonic":
            calibrated = np.asarray(self.isotonic.predict(raw), dtype=float)
            return np.asarray(np.clip(calibrated, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR), dtype=float)
        return sigmoid(self.slope * raw + self.intercept)


def sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(x, -35, 35))), dtype=float)


def logit(p: FloatArray) -> FloatArray:
    p = np.clip(p, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return np.asarray(np.log(p / (1 - p)), dtype=float)


class ClassifierModel:
    """Encoder + estimator + calibrator: raw features in, calibrated probabilities out."""

    def __init__(self, encoder: TabularEncoder, algorithm: Algorithm, estimator: Any, calibrator: Calibrator) -> None:
        self.encoder = encoder
        self.algorithm = algorithm
        self.estimator = estimator
        self.calibrator = calibrator

    @property
    def specs(self) -> list[FeatureSpec]:
        return self.encoder.specs

    def raw_score(self, matrix: FloatArray) -> FloatArray:
        return np.asarray(self.estimator.decision_function(matrix), dtype=float).reshape(-1)

    def predict_matrix(self, matrix: FloatArray) -> FloatArray:
        if len(matrix) == 0:
            return np.zeros(0)
        return self.calibrator.predict(self.raw_score(matrix))

    def predict(self, dataset: Dataset) -> FloatArray:
        return self.predict_matrix(self.encoder.transform(dataset))

    def linear_terms(self) -> tuple[FloatArray, list[list[int]]] | None:
        """For logistic regression: per-matrix-column weights in calibrated log-odds, and for each
        encoder column the expanded columns (imputed value, missing indicator) it feeds."""
        if self.algorithm != "logistic" or self.calibrator.method != "sigmoid":
            return None
        imputer, scaler, logistic = self.estimator[0], self.estimator[1], self.estimator[2]
        width = len(self.encoder.column_names)
        expanded: list[list[int]] = [[j] for j in range(width)]
        indicator = getattr(imputer, "indicator_", None)
        if indicator is not None:
            for k, source in enumerate(indicator.features_):
                expanded[int(source)].append(width + k)
        weights = self.calibrator.slope * logistic.coef_[0] / scaler.scale_
        return np.asarray(weights, dtype=float), expanded

    def expand(self, matrix: FloatArray) -> FloatArray:
        """The logistic pipeline's inputs after imputation (before scaling)."""
        return np.asarray(self.estimator[0].transform(matrix), dtype=float)


def serialize(model: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def deserialize(blob: bytes) -> Any:
    import joblib

    # Only artefacts this code wrote to the organization's own rows are ever loaded.
    return joblib.load(io.BytesIO(blob))
