"""``okyaku model evaluate --csv``: any CSV of historical records, a seeded stratified holdout."""

from __future__ import annotations

import csv
import json

import numpy as np

from okyaku.cli import main
from tests.support.synthetic_crm import generate_leads


def write_csv(path, n: int, seed: int = 0) -> None:
    data = generate_leads(n, seed=seed, leak=True)
    columns = data.dataset.columns
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["lead_ref", *columns, "created_on", "converted"])
        for i in range(n):
            created = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}"
            row = ["" if v is None else v for v in (columns[name][i] for name in columns)]
            label = "yes" if data.dataset.labels[i] else "no"
            writer.writerow([f"L-{i:05d}", *row, created if rng.random() > 0.1 else "", label])


def evaluate(capsys, *args: str) -> tuple[int, str]:
    code = main(["model", "evaluate", *args])
    return code, capsys.readouterr().out


def test_evaluate_a_csv_prints_the_figures_as_json(tmp_path, capsys):
    path = tmp_path / "leads.csv"
    write_csv(path, 1500)
    code, out = evaluate(
        capsys, "--csv", str(path), "--label", "converted", "--positive", "yes", "--seed", "3", "--json"
    )
    assert code == 0
    report = json.loads(out)
    assert {"auc", "brier", "n_train", "n_test", "method"} <= set(report)
    assert report["method"] == "model" and report["n_train"] == 1200 and report["n_test"] == 300
    assert 0.7 < report["auc"] < 1.0 and 0 < report["brier"] < 0.2
    assert len(report["calibration_by_decile"]) == 10 and report["lift_top_decile"] > 1.5
    excluded = {e["feature"]: e["reason"] for e in report["excluded_features"]}
    assert excluded["lead_ref"].startswith("identifier-like")
    assert excluded["became_customer_flag"].startswith("leak")
    assert report["top_factors"][0]["feature"] in {"meetings_30d", "days_since_last_activity", "seniority", "industry"}
    # Same seed, same split, same figures; --drop removes what it names.
    _, again = evaluate(
        capsys,
        *("--csv", str(path), "--label", "converted", "--positive", "yes", "--seed", "3", "--json"),
        *("--drop", "became_customer_flag", "meetings_30d"),
    )
    dropped = json.loads(again)
    assert dropped["n_test"] == 300 and dropped["auc"] < report["auc"]
    assert {"became_customer_flag", "meetings_30d"} <= {e["feature"] for e in dropped["excluded_features"]}


def test_a_small_csv_reports_the_prior_and_the_human_output_reads(tmp_path, capsys):
    path = tmp_path / "few.csv"
    write_csv(path, 120)
    code, out = evaluate(capsys, "--csv", str(path), "--label", "converted", "--positive", "yes")
    assert code == 0
    assert "method       prior" in out and "a model needs 200" in out
    code, out = evaluate(capsys, "--csv", str(path), "--label", "converted", "--positive", "yes", "--json")
    report = json.loads(out)
    assert report["method"] == "prior" and report["n_train"] == 0 and report["auc"] == 0.5


def test_bad_arguments_say_what_is_wrong(tmp_path, capsys):
    path = tmp_path / "leads.csv"
    write_csv(path, 50)
    assert main(["model", "evaluate", "--csv", str(path), "--label", "nope", "--positive", "yes"]) == 2
    assert "label column 'nope' is not in the CSV" in capsys.readouterr().err
    assert main(["model", "evaluate", "--csv", str(path), "--label", "converted"]) == 2
    assert "--positive" in capsys.readouterr().err
    assert main(["model", "evaluate", "--csv", str(tmp_path / "missing.csv"), "--label", "a", "--positive", "b"]) == 2
    assert main(["model", "evaluate", "--target", "lead"]) == 2
    assert "--org" in capsys.readouterr().err
