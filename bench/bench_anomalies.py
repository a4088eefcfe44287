"""Anomalies: recall and false alarms of the series detector on synthetic series (weekly
seasonality, injected spikes, dips and level shifts), and one whole scan of an organization with
100,000 activities.

    python -m bench anomalies            # OKYAKU_BENCH_ANOMALY_ACTIVITIES=100000, ..._TRIALS=20
"""

from __future__ import annotations

import os
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench._database import bench_organization
from okyaku.anomalies.series import SeriesSettings
from okyaku.anomalies.service import AnomalyService
from okyaku.anomalies.synthetic import METRICS, Score, evaluate, make_scenario
from okyaku.config import Settings
from okyaku.runtime import Runtime

STAGES = [
    ("Qualification", 0.1, False, False),
    ("Proposal", 0.4, False, False),
    ("Negotiation", 0.7, False, False),
    ("Closed Won", 1.0, True, False),
    ("Closed Lost", 0.0, False, True),
]


def detector_table(trials: int) -> None:
    print(
        f"series detector, {trials} scenarios per metric: 8 judged weeks each, "
        "2 spikes + 2 dips (6x noise) + 1 shift (x2 or /2)"
    )
    print(f"{'metric':<22}{'baseline':<16}{'recall':>8}{'FA / 8 wk':>11}   found/events by kind")
    for use_stl, name in ((True, "robust STL"), (False, "weekday median")):
        rng = random.Random(11)
        for metric in METRICS:
            total = Score()
            for _ in range(trials):
                total.add(evaluate(make_scenario(metric, rng), SeriesSettings(counts=metric.counts, use_stl=use_stl)))
            kinds = ", ".join(f"{k} {f}/{n}" for k, (f, n) in sorted(total.by_kind.items()))
            print(f"{metric.name:<22}{name:<16}{total.recall:>8.2f}{total.false_alarms / trials:>11.2f}   {kinds}")


def _populate(runtime: Runtime, organization_id: uuid.UUID, activities: int, deals: int, seed: int = 5) -> None:
    """Bulk SQL: this measures the scan, not the CRM services' write path."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with runtime.transaction(organization_id) as session:
        owners = [
            session.execute(
                text("INSERT INTO users (email, name) VALUES (:e, :n) RETURNING id"),
                {"e": f"rep{i}@bench.example", "n": f"Rep {i}"},
            ).scalar_one()
            for i in range(8)
        ]
        pipeline = session.execute(
            text("INSERT INTO pipelines (name, is_default) VALUES ('Sales', true) RETURNING id")
        ).scalar_one()
        stage_ids = [
            session.execute(
                text(
                    "INSERT INTO pipeline_stages (pipeline_id, name, position, probability, is_won, is_lost) "
                    "VALUES (:p, :n, :pos, :prob, :won, :lost) RETURNING id"
                ),
                {"p": pipeline, "n": n, "pos": i, "prob": p, "won": w, "lost": lost},
            ).scalar_one()
            for i, (n, p, w, lost) in enumerate(STAGES)
        ]
        deal_rows = []
        for i in range(deals):
            stage = rng.choices(range(5), weights=[30, 20, 15, 20, 15])[0]
            created = now - timedelta(days=rng.uniform(5, 120))
            deal_rows.append(
                {
                    "id": uuid.uuid4(),
                    "name": f"Deal {i}",
                    "p": pipeline,
                    "s": stage_ids[stage],
                    "a": rng.randrange(1000, 200000, 500) if rng.random() > 0.05 else None,
                    "c": (now + timedelta(days=rng.randint(-10, 120))).date(),
                    "o": rng.choice(owners),
                    "t": created,
                    "closed": created + timedelta(days=rng.uniform(1, 4)) if stage >= 3 else None,
                }
            )
        session.execute(
            text(
                "INSERT INTO deals (id, name, pipeline_id, stage_id, amount, expected_close_date, owner_id, "
                "created_at, "
                "stage_entered_at, closed_at) VALUES (:id, :name, :p, :s, :a, :c, :o, :t, :t, :closed)"
            ),
            deal_rows,
        )
        session.execute(
            text(
                "INSERT INTO deal_stage_history (deal_id, to_stage_id, changed_at) "
                "SELECT id, stage_id, created_at FROM deals"
            )
        )
        session.execute(
            text(
                """
                INSERT INTO activities (type, subject, occurred_at, owner_id, deal_id)
                SELECT (ARRAY['call','meeting','email','note'])[1 + floor(random() * 4)::int], 'touch',
                       now() - (random() * interval '120 days'),
                       (CAST(:owners AS uuid[]))[1 + floor(random() * :n_owners)::int],
                       CASE WHEN random() < 0.7 THEN (CAST(:deals AS uuid[]))[1 + floor(random() * :n_deals)::int] END
                FROM generate_series(1, :count)
                """
            ),
            {
                "owners": owners,
                "n_owners": len(owners),
                "deals": [d["id"] for d in deal_rows],
                "n_deals": len(deal_rows),
                "count": activities,
            },
        )
        session.execute(
            text(
                "INSERT INTO contacts (first_name, email, created_at) SELECT 'Lead ' || g, "
                "CASE WHEN random() < 0.9 THEN 'lead' || g || '@bench.example' END, "
                "now() - random() * interval '120 days' "
                "FROM generate_series(1, :n) AS g"
            ),
            {"n": max(1000, activities // 20)},
        )


def scan_table(activities: int, deals: int, runs: int) -> None:
    with bench_organization("Anomalies bench", "admin@anomalies-bench.example") as bench:
        runtime = Runtime(Settings(database_url=bench.local.app_url), db=bench.db)
        started = time.perf_counter()
        _populate(runtime, bench.org.organization_id, activities, deals)
        print(
            f"\nscan of one organization: {activities:,} activities, {deals:,} deals "
            f"(populated in {time.perf_counter() - started:.1f} s)"
        )
        service = AnomalyService(runtime)
        samples, reports = [], []
        for _ in range(runs):
            started = time.perf_counter()
            reports.append(service.scan(bench.org.organization_id))
            samples.append(time.perf_counter() - started)
        ordered = sorted(samples)
        ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        print(f"{'what':<34}{'runs':>6}{'median s':>10}{'p95 s':>8}")
        print(f"{'whole scan (first: creates)':<34}{1:>6}{samples[0]:>10.2f}{samples[0]:>8.2f}")
        if runs > 1:
            print(
                f"{'whole scan (again: updates)':<34}{runs - 1:>6}"
                f"{statistics.median(samples[1:]):>10.2f}{max(samples[1:]):>8.2f}"
            )
        last = reports[-1]
        phases = ", ".join(f"{k} {v:.2f}" for k, v in last.seconds.items())
        print(f"phases of the last run (s): {phases}")
        print(
            f"found: {last.found}; series judged {last.series_judged}, "
            f"created {reports[0].created}, updated {last.updated}"
        )


def main() -> None:
    trials = int(os.environ.get("OKYAKU_BENCH_ANOMALY_TRIALS", "20"))
    activities = int(os.environ.get("OKYAKU_BENCH_ANOMALY_ACTIVITIES", "100000"))
    deals = int(os.environ.get("OKYAKU_BENCH_ANOMALY_DEALS", "3000"))
    runs = int(os.environ.get("OKYAKU_BENCH_ANOMALY_RUNS", "3"))
    detector_table(trials)
    scan_table(activities, deals, runs)


if __name__ == "__main__":
    main()
