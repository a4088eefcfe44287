"""Training on generated histories with a known signal: found, named, calibrated, leak-free."""

from __future__ import annotations

import numpy as np
import pytest

from okyaku.predictions.scoring import score_dataset
from okyaku.predictions.tabular import Dataset
from okyaku.predictions.training import TrainingConfig, train_classifier, train_regressor
from tests.support.synthetic_crm import NOISE, TRUE_SIGNAL, generate_leads


@pytest.fixture(scope="module")
def trained():
    data = generate_leads(3000, seed=5, leak=True)
    return train_classifier(data.dataset, TrainingConfig(seed=1, candidates=("logistic",), refit_on_all=False))


def test_model_finds_the_known_signal_and_names_it(trained):
    assert trained.method == "model"
    assert trained.metrics["auc"] > 0.72  # the generating model's own AUC is about 0.77
    ranked = [f["feature"] for f in trained.metrics["top_factors"]]
    assert set(ranked[:4]) == set(TRUE_SIGNAL)
    sizes = {f["feature"]: f["mean_abs_impact"] for f in trained.metrics["top_factors"]}
    assert max(sizes.get(n, 0.0) for n in NOISE) < min(sizes[n] for n in TRUE_SIGNAL) / 3


def test_factors_of_a_single_lead_name_what_drives_it(trained):
    leads = generate_leads(200, seed=9).dataset
    busy = leads.with_values("meetings_30d", [3.0] * len(leads)).with_values("industry", ["retail"] * len(leads))
    for row in score_dataset(trained.model, busy)[:20]:
        strongest_up = max((f for f in row.factors if f.direction == "up"), key=lambda f: f.impact)
        assert strongest_up.feature == "meetings_30d"
        assert row.sub_scores["engagement"].impact > 0
    silent = leads.with_values("days_since_last_activity", [170.0] * len(leads))
    for row in score_dataset(trained.model, silent)[:20]:
        factor = next(f for f in row.factors if f.feature == "days_since_last_activity")
        assert factor.direction == "down" and factor.impact < -3


def test_a_feature_derived_from_the_outcome_is_excluded(trained):
    excluded = {e.name: e.reason for e in trained.excluded}
    assert "became_customer_flag" in excluded and excluded["became_customer_flag"].startswith("leak")
    assert "became_customer_flag" not in [s.name for s in trained.model.specs]
    # An honest strong feature is kept.
    assert "meetings_30d" not in excluded


def test_too_little_history_gives_the_prior():
    small = generate_leads(150, seed=2).dataset
    outcome = train_classifier(small)
    assert outcome.method == "prior" and outcome.model is None
    assert "150 labelled examples" in outcome.metrics["reason"]

    rare = generate_leads(800, seed=3).dataset
    labels = np.zeros(len(rare), dtype=np.int64)
    labels[:12] = 1  # enough rows, too few positives
    rare.labels = labels
    assert train_classifier(rare).method == "prior"


def test_calibration_by_decile_on_a_large_generated_set():
    data = generate_leads(30_000, seed=11)
    outcome = train_classifier(data.dataset, TrainingConfig(seed=4, candidates=("logistic",), refit_on_all=False))
    deciles = outcome.metrics["calibration_by_decile"]
    assert len(deciles) == 10 and sum(d["n"] for d in deciles) == outcome.n_test == 6000
    for decile in deciles:  # 600 examples per decile: a 2-sigma band is about 0.04
        assert abs(decile["mean_predicted"] - decile["observed_rate"]) < 0.05, decile
    assert outcome.metrics["expected_calibration_error"] < 0.025
    # The generating model's own Brier score bounds what any model can reach.
    truth = data.true_probability
    labels = data.dataset.labels
    best_possible = float(np.mean((truth - labels) ** 2))
    assert outcome.metrics["brier"] < best_possible + 0.01


@pytest.mark.parametrize("algorithm", ["logistic", "gradient_boosting"])
def test_each_factor_moves_the_score_as_stated(algorithm):
    """Setting a factor's feature to its typical value moves the score by exactly -impact."""
    train = generate_leads(2500, seed=21).dataset
    outcome = train_classifier(train, TrainingConfig(seed=2, candidates=(algorithm,), refit_on_all=False))
    model = outcome.model
    assert outcome.algorithm == algorithm
    sample = generate_leads(40, seed=22).dataset
    rows = score_dataset(model, sample, max_factors=20, min_points=0.0)
    typical = model.encoder.baseline_values
    checked = 0
    for index, row in enumerate(rows):
        one = sample.subset([index])
        for factor in row.factors:
            changed = one.with_values(factor.feature, [typical[factor.feature]])
            moved = 100.0 * float(model.predict(changed)[0])
            assert moved == pytest.approx(row.score - factor.impact, abs=0.06)  # score is rounded to 0.1
            if abs(factor.impact) > 0.1:
                assert (moved < row.score) == (factor.direction == "up")
            checked += 1
        if algorithm == "logistic":
            assert sum(f.log_odds for f in row.factors) == pytest.approx(
                np.log(row.probability / (1 - row.probability)) - np.log(row.typical_score / (100 - row.typical_score)),
                abs=0.01,
            )
    assert checked > 100


def test_regressor_interval_covers_about_eighty_percent():
    rng = np.random.default_rng(0)
    n = 1500
    size = rng.integers(10, 2000, n).astype(float)
    amount = size * 50 * np.exp(rng.normal(0, 0.3, n))
    from okyaku.predictions.tabular import FeatureSpec

    dataset = Dataset(
        specs=[FeatureSpec("company_employees", "numeric", "fit", log_scale=True)],
        columns={"company_employees": size.tolist()},
        ids=[str(i) for i in range(n)],
        targets=amount,
    )
    outcome = train_regressor(dataset, seed=1)
    assert outcome.method == "model"
    assert 0.65 <= outcome.metrics["interval_coverage_p10_p90"] <= 0.92
    assert outcome.metrics["median_abs_pct_error"] < 0.35
    point, low, high = outcome.model.predict(dataset.subset([0, 1, 2]))
    assert np.all(low <= point) and np.all(point <= high)

    few = dataset.subset(range(10))
    prior = train_regressor(few, default=(30.0, 7.0, 90.0))
    assert prior.method == "prior"
    empty = train_regressor(dataset.subset([]), default=(30.0, 7.0, 90.0))
    p, lo, hi = empty.model.predict(dataset.subset([0]))
    assert (round(p[0]), round(lo[0]), round(hi[0])) == (30, 7, 90)


def test_model_choice_by_validation_takes_boosting_only_when_it_is_clearly_better():
    """An interaction a linear model cannot express: boosting wins; a linear truth: logistic stays."""
    rng = np.random.default_rng(8)
    n = 1600
    a, b = rng.normal(size=n), rng.normal(size=n)
    labels = ((a * b > 0) ^ (rng.random(n) < 0.1)).astype(np.int64)
    from okyaku.predictions.tabular import FeatureSpec

    specs = [FeatureSpec("a", "numeric", "fit"), FeatureSpec("b", "numeric", "fit")]
    interaction = Dataset(specs, {"a": a.tolist(), "b": b.tolist()}, [str(i) for i in range(n)], labels=labels)
    chosen = train_classifier(interaction, TrainingConfig(seed=3, refit_on_all=False))
    assert chosen.algorithm == "gradient_boosting", chosen.metrics["selection"]
    assert chosen.metrics["auc"] > 0.8
    assert set(chosen.metrics["selection"]) == {"logistic", "gradient_boosting"}
