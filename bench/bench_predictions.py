"""Predictions: scoring and storing 10,000 leads (goal < 2 s) against one scripted-LLM call per
lead; training time for 50,000 rows; ``okyaku model evaluate`` on a leadforge dataset next to a
plain scikit-learn baseline on the same split.

``python -m bench predictions``. Uses the embedded Postgres in ``.okyaku/bench-pg`` and writes
the leadforge bundle under ``.okyaku/leadforge`` (skipped, with a note, if leadforge is missing).
``BENCH_PREDICTIONS_LEADS`` / ``BENCH_PREDICTIONS_TRAIN_ROWS`` change the sizes.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from bench._database import bench_organization
from okyaku.config import Settings
from okyaku.db import Database
from okyaku.runtime import Runtime
from tests.support.synthetic_crm import INDUSTRIES, TITLES, crm_lead_logit, generate_leads

ROOT = Path(__file__).resolve().parents[1]
LEADFORGE_DIR = ROOT / ".okyaku" / "leadforge"
Row = tuple[str, str, float, float, str]


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _timed(call: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    samples, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = call()
        samples.append(time.perf_counter() - started)
    return samples, result


# --- a CRM with 10,000 open leads and a labelled history -----------------------------------------


def _bulk_history(runtime: Runtime, organization_id: uuid.UUID, open_leads: int, labelled: int, seed: int = 3) -> None:
    """Bulk SQL rather than the CRM services: this measures scoring, and writing ~70,000 records
    one by one through the services would take minutes."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    total = open_leads + labelled
    with runtime.transaction(organization_id) as session:
        companies = {
            industry: session.execute(
                text("INSERT INTO companies (name, industry, employee_count) VALUES (:n, :i, :e) RETURNING id"),
                {"n": f"{industry} Inc", "i": industry, "e": int(rng.integers(20, 5000))},
            ).scalar_one()
            for industry in INDUSTRIES
        }
        industry = rng.choice(INDUSTRIES, total)
        level = rng.integers(1, 6, total)
        meetings = rng.poisson(0.8, total)
        logits = np.array(
            [crm_lead_logit(int(m), i == "software", int(s)) for m, i, s in zip(meetings, industry, level, strict=True)]
        )
        converted = rng.random(total) < 1 / (1 + np.exp(-logits))
        is_labelled = np.arange(total) >= open_leads
        ids = [uuid.uuid4() for _ in range(total)]
        session.execute(
            text(
                """
                INSERT INTO contacts (id, first_name, email, job_title, company_id, lifecycle_stage, lead_status)
                SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:names AS text[]), CAST(:emails AS text[]),
                                     CAST(:titles AS text[]), CAST(:companies AS uuid[]), CAST(:stages AS text[]),
                                     CAST(:statuses AS text[]))
                """
            ),
            {
                "ids": ids,
                "names": [f"Lead {i}" for i in range(total)],
                "emails": [f"lead{i}@{industry[i]}.example" for i in range(total)],
                "titles": [TITLES[int(s)] for s in level],
                "companies": [companies[i] for i in industry],
                "stages": [
                    "customer" if lab and conv else "lead" for lab, conv in zip(is_labelled, converted, strict=True)
                ],
                "statuses": [
                    "unqualified" if lab and not conv else None
                    for lab, conv in zip(is_labelled, converted, strict=True)
                ],
            },
        )
        contact_ids, kinds, times = [], [], []
        for index, contact_id in enumerate(ids):
            for _ in range(int(meetings[index])):
                contact_ids.append(contact_id)
                kinds.append("meeting")
                times.append(now - timedelta(days=float(rng.uniform(1, 28))))
            for _ in range(int(rng.poisson(2.0))):
                contact_ids.append(contact_id)
                kinds.append(str(rng.choice(["email", "call"])))
                times.append(now - timedelta(days=float(rng.uniform(1, 85))))
        session.execute(
            text(
                """
                INSERT INTO activities (contact_id, type, occurred_at, direction)
                SELECT c, t, o, 'outbound' FROM unnest(CAST(:contacts AS uuid[]), CAST(:types AS text[]),
                                                       CAST(:times AS timestamptz[])) AS a(c, t, o)
                """
            ),
            {"contacts": contact_ids, "types": kinds, "times": times},
        )


def _analyze(owner_url: str) -> None:
    """What autovacuum does within a minute of a bulk load: fresh planner statistics."""
    owner = Database(owner_url)
    with owner.session() as session:
        for table in ("companies", "contacts", "activities", "deals", "tasks"):
            session.execute(text(f"ANALYZE {table}"))
    owner.dispose()


def scoring_rows(runtime: Runtime, organization_id: uuid.UUID, leads: int) -> list[Row]:
    from okyaku.predictions import features as feats
    from okyaku.predictions.examples import scoring_population
    from okyaku.predictions.scoring import score_dataset
    from okyaku.predictions.service import cyclic_gc_paused, load_model, score_and_store, train_target

    rows: list[Row] = []
    with runtime.transaction(organization_id) as session:
        started = time.perf_counter()
        (model, *_) = train_target(session, "lead")
        trained = time.perf_counter() - started
    auc = model.metrics.get("auc")
    rows.append(
        (
            f"train lead model ({model.algorithm})",
            f"{model.n_examples} labelled",
            trained,
            trained,
            f"auc {auc:.3f}" if auc else model.method,
        )
    )
    now = datetime.now(UTC)
    with runtime.transaction(organization_id) as session:
        ids = scoring_population(session, "lead")
        loaded = load_model(session, "lead")
        with cyclic_gc_paused():  # as score_and_store runs them
            features, dataset = _timed(lambda: feats.contact_features(session, [(i, now) for i in ids]), 3)
            scoring, _ = _timed(lambda: score_dataset(loaded.scorer, dataset), 3)
    rows.append(("  features from SQL", f"{len(ids)} leads", *_stats(features), ""))
    rows.append(("  model + factors + sub-scores", f"{len(ids)} leads", *_stats(scoring), ""))

    def score_and_store_all() -> int:
        with runtime.transaction(organization_id) as session:
            return len(score_and_store(session, "lead", ids, now=datetime.now(UTC), loaded=loaded))

    total, count = _timed(score_and_store_all, 3)
    median, p95 = _stats(total)
    rows.append(("score + explain + store", f"{count} leads", median, p95, "goal < 2 s"))
    per_call = _llm_call_seconds(runtime, organization_id, ids[:1])
    if per_call is not None:
        rows.append(("one scripted-LLM explanation", "1 lead", per_call, per_call, ""))
        rows.append(
            (
                "  x one LLM call per lead",
                f"{count} leads",
                per_call * count,
                per_call * count,
                f"{per_call * count / median:.0f}x the batch",
            )
        )
    return rows


def _llm_call_seconds(runtime: Runtime, organization_id: uuid.UUID, ids: list[uuid.UUID]) -> float | None:
    """A lower bound for an LLM-written explanation: the scripted server answers instantly."""
    try:
        from okyaku.llm import LLMConfig, LLMGateway
        from okyaku.predictions.explain_llm import FACTS_BEGIN, FACTS_END, LLMExplanationWriter
        from okyaku.predictions.service import PredictionService
        from tests.support.openai_server import Reply, ScriptedOpenAIServer
    except ImportError:
        return None

    def faithful(request: Any) -> Reply:
        facts = json.loads(request.body["messages"][-1]["content"].split(FACTS_BEGIN)[1].split(FACTS_END)[0])
        return Reply.json_object({"explanation": f"It scores {facts['score']}/100.", "recommendations": []})

    with ScriptedOpenAIServer() as server:
        server.responder = faithful
        gateway = LLMGateway(LLMConfig(base_url=server.base_url))
        service = PredictionService(runtime, writer=LLMExplanationWriter(gateway))
        samples, _ = _timed(lambda: service.lead_score(organization_id, ids[0]), 20)
        gateway.close()
    return statistics.median(samples)


# --- training time ------------------------------------------------------------------------------


def training_rows(rows_count: int) -> list[Row]:
    from okyaku.predictions.training import TrainingConfig, train_classifier

    data = generate_leads(rows_count, seed=1)
    rows: list[Row] = []
    for label, config in (
        ("train logistic only", TrainingConfig(seed=2, candidates=("logistic",))),
        ("train + choose (logistic vs boosting)", TrainingConfig(seed=2)),
    ):
        samples, outcome = _timed(lambda config=config: train_classifier(data.dataset, config), 1)
        rows.append(
            (
                label,
                f"{rows_count} rows",
                samples[0],
                samples[0],
                f"{outcome.algorithm}, auc {outcome.metrics['auc']:.3f}, brier {outcome.metrics['brier']:.3f}",
            )
        )
    return rows


# --- leadforge ------------------------------------------------------------------------------------


def leadforge_csv(n_leads: int = 5000, seed: int = 42) -> Path | None:
    """The task table of a generated bundle, with the final opportunity stage joined back on (the
    public bundle's leak) so that the leak screen has something to find."""
    try:
        import pandas as pd
        from leadforge.api import Generator
    except ImportError:
        return None
    bundle = LEADFORGE_DIR / f"b2b-{n_leads}-{seed}"
    out = LEADFORGE_DIR / f"leads-{n_leads}-{seed}.csv"
    if out.exists():
        return out
    if not (bundle / "manifest.json").exists():
        generator = Generator.from_recipe("b2b_saas_procurement_v1", seed=seed, exposure_mode="student_public")
        generator.generate(n_leads=n_leads, difficulty="intermediate").save(str(bundle))
    task = bundle / "tasks" / "converted_within_90_days"
    frame = pd.concat([pd.read_parquet(task / f"{s}.parquet") for s in ("train", "valid", "test")], ignore_index=True)
    opportunities = pd.read_parquet(bundle / "tables" / "opportunities.parquet").sort_values("created_at")
    final_stage = opportunities.groupby("lead_id").tail(1)[["lead_id", "stage"]]
    frame.merge(final_stage, on="lead_id", how="left").to_csv(out, index=False)
    return out


def baseline(path: Path, label: str, drop: list[str], seed: int) -> dict[str, dict[str, float]]:
    """Plain scikit-learn: one-hot + scaled numbers, default logistic regression and default
    histogram boosting, on exactly the split ``okyaku model evaluate`` holds out."""
    import pandas as pd
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from okyaku.predictions.training import stratified_holdout

    frame = pd.read_csv(path)
    labels = (frame.pop(label).astype(str).str.lower() == "true").astype(int).to_numpy()
    frame = frame.drop(columns=drop)
    numeric = [c for c in frame if pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c])]
    categorical = [c for c in frame if c not in numeric]
    frame[numeric] = frame[numeric].astype(float)
    frame[categorical] = frame[categorical].astype(str)
    train, test = stratified_holdout(labels, seed, 0.2)
    prepare = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), categorical),
        (make_pipeline(SimpleImputer(), StandardScaler()), numeric),
    )
    results = {}
    for name, model in (
        ("sklearn LogisticRegression()", LogisticRegression(max_iter=2000)),
        ("sklearn HistGradientBoosting()", HistGradientBoostingClassifier(random_state=0)),
    ):
        p = make_pipeline(prepare, model).fit(frame.iloc[train], labels[train]).predict_proba(frame.iloc[test])[:, 1]
        results[name] = {
            "auc": float(roc_auc_score(labels[test], p)),
            "brier": float(brier_score_loss(labels[test], p)),
        }
    return results


def leadforge_rows(seed: int = 7) -> list[Row]:
    from okyaku.predictions.evaluation import evaluate_csv

    path = leadforge_csv()
    if path is None:
        print("leadforge is not installed (pip install leadforge): evaluation skipped")
        return []
    label = "converted_within_90_days"
    leaks = ["stage", "total_touches_all"]
    rows: list[Row] = []
    started = time.perf_counter()
    ours = evaluate_csv(str(path), label=label, positive="true", drop=leaks, seed=seed)
    seconds = time.perf_counter() - started
    rows.append(
        (
            f"okyaku model evaluate ({ours['algorithm']})",
            f"{ours['n_train']}/{ours['n_test']}",
            seconds,
            seconds,
            f"auc {ours['auc']:.3f}, brier {ours['brier']:.4f}, ece {ours['expected_calibration_error']:.3f}, "
            f"lift@10% {ours['lift_top_decile']:.2f}",
        )
    )
    ids = ["lead_id", "contact_id", "account_id", "lead_created_at"]
    started = time.perf_counter()
    for name, figures in baseline(path, label, leaks + ids, seed).items():
        rows.append((name, "same split", 0.0, 0.0, f"auc {figures['auc']:.3f}, brier {figures['brier']:.4f}"))
    seconds = time.perf_counter() - started
    rows[-1] = (*rows[-1][:2], seconds, seconds, rows[-1][4])
    unguarded = evaluate_csv(str(path), label=label, positive="true", seed=seed)
    caught = [e["feature"] for e in unguarded["excluded_features"] if e["reason"].startswith("leak")]
    rows.append(
        (
            "  without --drop: leak screen",
            "same split",
            0.0,
            0.0,
            f"caught {', '.join(caught) or 'nothing'}; auc {unguarded['auc']:.3f}",
        )
    )
    return rows


def main() -> None:
    leads = int(os.environ.get("BENCH_PREDICTIONS_LEADS", "10000"))
    train_rows = int(os.environ.get("BENCH_PREDICTIONS_TRAIN_ROWS", "50000"))
    with bench_organization("Predictions bench", "bench@example.com") as bench:
        local, org = bench.local, bench.org
        runtime = Runtime(Settings(database_url=local.app_url), db=bench.db, publisher=None)
        _bulk_history(runtime, org.organization_id, open_leads=leads, labelled=5000)
        _analyze(local.owner_url)
        rows = scoring_rows(runtime, org.organization_id, leads)
        rows += training_rows(train_rows)
        rows += leadforge_rows()
        print(f"{'measured':<40}{'size':>16}{'median s':>10}{'p95 s':>8}  note")
        for name, size, median, p95, note in rows:
            print(f"{name:<40}{size:>16}{median:>10.3f}{p95:>8.3f}  {note}")


if __name__ == "__main__":
    main()
