"""The batch scoring path's shortcuts give what the row-at-a-time definitions give."""

from __future__ import annotations

import gc
import hashlib

import pytest

from okyaku.predictions.scoring import score_dataset
from okyaku.predictions.service import LoadedModel, cyclic_gc_paused, input_hash, input_hashes
from okyaku.predictions.tabular import Dataset, FeatureSpec, display_value
from okyaku.predictions.training import TrainingConfig, train_classifier
from tests.support.synthetic_crm import generate_leads


def loaded_model() -> LoadedModel:
    return LoadedModel("lead", 3, "model", "logistic", None, {}, 0)  # type: ignore[arg-type]


def test_input_hashes_are_the_row_by_row_hashes():
    specs = [
        FeatureSpec("zeta", "numeric", "fit"),
        FeatureSpec("alpha", "categorical", "fit"),
        FeatureSpec("mid", "boolean", "timing"),
    ]
    columns = {
        "zeta": [1.0, None, 3, float("nan"), 2.5],
        "alpha": ["x", "it's", None, "ü", "x"],
        "mid": [True, False, None, True, False],
    }
    dataset = Dataset(specs=specs, columns=columns, ids=[str(i) for i in range(5)])
    loaded = loaded_model()
    expected = [
        hashlib.sha256(
            repr(("lead", 3, "model", sorted((s.name, columns[s.name][row]) for s in specs))).encode()
        ).hexdigest()
        for row in range(2)  # rows whose values compare (sorting never reaches them: names differ)
    ]
    assert input_hashes(dataset, loaded)[:2] == expected
    assert input_hashes(dataset, loaded) == [input_hash(dataset, i, loaded) for i in range(5)]
    assert len(set(input_hashes(dataset, loaded))) == 5
    empty = Dataset(specs=[], columns={}, ids=["a", "b"])
    assert input_hashes(empty, loaded) == [input_hash(empty, i, loaded) for i in range(2)]


@pytest.mark.parametrize("algorithm", ["logistic", "boosting"])
def test_factors_show_each_rows_own_values(algorithm):
    data = generate_leads(300, seed=4)
    model = train_classifier(data.dataset, TrainingConfig(seed=1, candidates=(algorithm,))).model
    assert model is not None
    rows = score_dataset(model, data.dataset, max_factors=5)
    specs = {s.name: s for s in model.specs}
    typical = model.encoder.baseline_values
    checked = 0
    for r, row in enumerate(rows):
        assert row.entity_id == data.dataset.ids[r]
        impacts = [abs(f.impact) for f in row.factors]
        assert impacts == sorted(impacts, reverse=True)
        for factor in row.factors:
            spec = specs[factor.feature]
            assert factor.value == display_value(spec, data.dataset.columns[spec.name][r])
            assert factor.typical == display_value(spec, typical.get(spec.name))
            assert (factor.log_odds is not None) == (algorithm == "logistic")
            checked += 1
    assert checked > 300


def test_the_collector_is_paused_only_inside_and_always_resumed():
    assert gc.isenabled()
    with cyclic_gc_paused(False):
        assert gc.isenabled()
    with pytest.raises(RuntimeError), cyclic_gc_paused():
        assert not gc.isenabled()
        with cyclic_gc_paused():  # nested: the outer pause resumes it
            pass
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()
