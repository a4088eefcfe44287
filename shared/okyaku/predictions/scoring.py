"""Scores with faithful factors.

A factor's ``impact`` is how many score points the entity would lose (or gain) if that one
feature took its typical value (the training data's median or most frequent value) and
everything else stayed as it is. It is measured on the calibrated model itself, so changing the
feature really moves the score in the stated direction:

- logistic regression: exactly coefficient x (value - typical value) in calibrated log-odds,
  turned into points;
- gradient boosting: by perturbation (the feature replaced by its typical value, the model
  asked again).

Sub-scores group the factors into engagement, fit and timing: a sub-score is the score a
typical entity would get with only that group's features taken from this one."""

from __future__ import annotations

from typing import Any

import numpy as np

from okyaku.predictions.classifier import ClassifierModel, logit, sigmoid
from okyaku.predictions.factors import Factor, ScoredRow, SubScore
from okyaku.predictions.priors import PriorModel
from okyaku.predictions.tabular import GROUPS, Dataset, FloatArray, display_value

MIN_FACTOR_POINTS = 0.5
MAX_FACTORS = 8


Scorer = ClassifierModel | PriorModel


def score_dataset(
    scorer: Scorer, dataset: Dataset, *, max_factors: int = MAX_FACTORS, min_points: float = MIN_FACTOR_POINTS
) -> list[ScoredRow]:
    if isinstance(scorer, PriorModel):
        return scorer.score(dataset, max_factors=max_factors)
    return _score_with_model(scorer, dataset, max_factors, min_points)


def feature_impacts(model: ClassifierModel, matrix: FloatArray) -> FloatArray:
    """Points (0-100 scale) each raw feature adds, per row: shape (rows, features)."""
    impacts, _, _ = _impacts(model, matrix)
    return impacts


def _impacts(model: ClassifierModel, matrix: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """Per-feature impacts (points), the probabilities, and for logistic models the exact
    per-feature log-odds terms."""
    encoder = model.encoder
    specs = model.specs
    probabilities = model.predict_matrix(matrix)
    impacts = np.zeros((len(matrix), len(specs)))
    linear = model.linear_terms()
    if linear is not None:
        weights, expanded = linear
        terms = (model.expand(matrix) - model.expand(encoder.baseline[None, :])) * weights
        log_odds = np.zeros((len(matrix), len(specs)))
        logits = logit(probabilities)
        for i, spec in enumerate(specs):
            columns = [c for j in encoder.slices[spec.name] for c in expanded[j]]
            log_odds[:, i] = terms[:, columns].sum(axis=1)
            impacts[:, i] = 100.0 * (probabilities - sigmoid(logits - log_odds[:, i]))
        return impacts, probabilities, log_odds
    for i, spec in enumerate(specs):
        columns = encoder.slices[spec.name]
        typical = encoder.baseline[columns]
        block = matrix[:, columns]
        same = (block == typical) | (np.isnan(block) & np.isnan(typical))
        rows = np.flatnonzero(~same.all(axis=1))
        if len(rows) == 0:
            continue
        perturbed = matrix[rows].copy()
        perturbed[:, columns] = typical
        impacts[rows, i] = 100.0 * (probabilities[rows] - model.predict_matrix(perturbed))
    return impacts, probabilities, None


def _group_scores(
    model: ClassifierModel, matrix: FloatArray, probabilities: FloatArray, log_odds: FloatArray | None
) -> tuple[float, dict[str, tuple[FloatArray, FloatArray]]]:
    """The typical entity's score, and per group (sub-score, impact) arrays."""
    encoder = model.encoder
    baseline = encoder.baseline
    typical_probability = float(model.predict_matrix(baseline[None, :])[0])
    result: dict[str, tuple[FloatArray, FloatArray]] = {}
    for group in GROUPS:
        members = [i for i, s in enumerate(model.specs) if s.group == group]
        if not members:
            continue
        columns = [c for i in members for c in encoder.slices[model.specs[i].name]]
        if log_odds is not None:
            group_terms = log_odds[:, members].sum(axis=1)
            alone = sigmoid(logit(np.array([typical_probability])) + group_terms)
            without = sigmoid(logit(probabilities) - group_terms)
        else:
            only = np.repeat(baseline[None, :], len(matrix), axis=0)
            only[:, columns] = matrix[:, columns]
            alone = model.predict_matrix(only)
            rest = matrix.copy()
            rest[:, columns] = baseline[columns]
            without = model.predict_matrix(rest)
        result[group] = (100.0 * alone, 100.0 * (probabilities - without))
    return typical_probability, result


def _score_with_model(model: ClassifierModel, dataset: Dataset, max_factors: int, min_points: float) -> list[ScoredRow]:
    matrix = model.encoder.transform(dataset)
    impacts, probabilities, log_odds = _impacts(model, matrix)
    typical_probability, groups = _group_scores(model, matrix, probabilities, log_odds)
    specs = model.specs
    typical_display = [display_value(s, model.encoder.baseline_values.get(s.name)) for s in specs]
    raw_columns = [dataset.columns.get(s.name) for s in specs]
    # Plain Python lists of each row's largest impacts: indexing numpy scalars one at a time is slow.
    orders = np.argsort(-np.abs(impacts), axis=1, kind="stable")[:, :max_factors]
    top_impacts = np.take_along_axis(impacts, orders, axis=1).tolist()
    top_log_odds = None if log_odds is None else np.take_along_axis(log_odds, orders, axis=1).tolist()
    group_rows = [(g, alone.tolist(), impact.tolist()) for g, (alone, impact) in groups.items()]
    typical_score = round(100.0 * typical_probability, 1)
    shown: dict[tuple[int, type, Any], Any] = {}  # values repeat (counts, categories): display each once
    rows: list[ScoredRow] = []
    for r, (entity_id, order) in enumerate(zip(dataset.ids, orders.tolist(), strict=True)):
        factors = []
        for k, i in enumerate(order):
            impact = top_impacts[r][k]
            if abs(impact) < min_points:
                break  # ordered by size: the rest are smaller still
            column = raw_columns[i]
            value = None if column is None else column[r]
            key = (i, type(value), value)
            if key not in shown:
                shown[key] = display_value(specs[i], value)
            spec = specs[i]
            factors.append(
                Factor(
                    feature=spec.name,
                    label=spec.text,
                    group=spec.group,
                    value=shown[key],
                    typical=typical_display[i],
                    impact=impact,
                    log_odds=None if top_log_odds is None else top_log_odds[r][k],
                )
            )
        rows.append(
            ScoredRow(
                entity_id=entity_id,
                probability=float(probabilities[r]),
                typical_score=typical_score,
                factors=factors,
                sub_scores={g: SubScore(alone[r], impact[r]) for g, alone, impact in group_rows},
            )
        )
    return rows
