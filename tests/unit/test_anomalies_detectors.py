"""The detectors as pure functions: series on synthetic data with weekly seasonality and injected
spikes, dips and level shifts (recall and false alarms, measured and held as floors), the thin-data
rule, lasting shifts told from spikes, stale-deal bars, deal changes, severity."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from okyaku.anomalies import detectors as d
from okyaku.anomalies.mail import SummaryContent, anomaly_email, weekly_summary_email
from okyaku.anomalies.series import MIN_HISTORY, SeriesSettings, judge_day, judge_recent
from okyaku.anomalies.synthetic import METRICS, Score, evaluate, make_scenario

MONDAY = date(2026, 1, 5)

# Measured (bench_anomalies, 20 scenarios of 12 weeks per metric, seed 11; README): recall
# 0.83 / 0.87 / 0.93 / 1.00 and 0.25 / 0.20 / 0.00 / 0.10 false alarms per eight weeks for
# activities per owner / new leads / emails / pipeline value. These tests run 6 scenarios (seed 3:
# 0.83 / 0.90 / 0.93 / 0.97 recall, at most 0.17 false alarms) and hold what was measured as floors;
# they are what the detector does, not the 0.9 goal (weekend spikes on small counts and halved
# levels of small counts are missed).
FLOORS = {
    # metric: (minimum recall, maximum false alarms per eight weeks)
    "activities_per_owner": (0.8, 0.5),
    "new_leads": (0.85, 0.5),
    "emails": (0.9, 0.5),
    "pipeline_value": (0.95, 0.5),
}


@pytest.mark.parametrize("metric", [m for m in METRICS if m.name in FLOORS], ids=lambda m: m.name)
def test_recall_and_false_alarms_on_synthetic_series(metric: object) -> None:
    rng = random.Random(3)
    total = Score()
    trials = 6
    for _ in range(trials):
        total.add(evaluate(make_scenario(metric, rng)))  # type: ignore[arg-type]
    low_recall, most_alarms = FLOORS[metric.name]  # type: ignore[attr-defined]
    print(metric.name, total.recall, total.false_alarms / trials, total.by_kind)  # type: ignore[attr-defined]
    assert total.recall >= low_recall
    assert total.false_alarms / trials <= most_alarms


def test_a_sparse_metric_is_mostly_left_alone() -> None:
    """Two deals won a weekday: a day with none is not news, and the detector says nothing."""
    (won,) = [m for m in METRICS if m.name == "deals_won"]
    rng = random.Random(4)
    total = Score()
    for _ in range(6):
        total.add(evaluate(make_scenario(won, rng)))
    assert total.false_alarms / 6 <= 0.7
    assert total.by_kind["spike"][0] >= total.by_kind["spike"][1] // 3  # big spikes still show


def weekly(levels: tuple[float, ...], weeks: int) -> list[float]:
    return [float(v) for _ in range(weeks) for v in levels]


WORKWEEK = (10.0, 12.0, 11.0, 9.0, 10.0, 2.0, 1.0)


def test_below_seven_days_there_is_no_judgement() -> None:
    for n in range(MIN_HISTORY):
        judgement = judge_day([10.0] * n, 500.0, MONDAY)
        assert judgement.method == "insufficient_history" and not judgement.anomalous


def test_short_history_uses_same_weekday_medians() -> None:
    history = weekly(WORKWEEK, 2)  # two weeks: no STL yet
    quiet_saturday = judge_day(history[:12], 2.0, MONDAY + timedelta(days=12))
    assert quiet_saturday.method == "weekday_median" and not quiet_saturday.anomalous
    monday_spike = judge_day(history, 40.0, MONDAY + timedelta(days=14))
    assert monday_spike.method == "weekday_median" and monday_spike.anomalous and monday_spike.kind == "spike"
    assert monday_spike.expected == pytest.approx(10.0, abs=0.5)
    # a Saturday as busy as a weekday is fine on a Monday, not on a Saturday
    assert not judge_day(history, 11.0, MONDAY + timedelta(days=14)).anomalous


def test_three_weeks_bring_stl_and_a_dip_is_found() -> None:
    rng = random.Random(1)
    history = [v + rng.choice((-1, 0, 1)) for v in weekly(WORKWEEK, 4)]
    judgement = judge_day(history, 0.0, MONDAY + timedelta(days=28))
    assert judgement.method == "stl" and judgement.anomalous and judgement.kind == "dip"
    assert judgement.evidence()["method"] == "stl"
    assert not judge_day(history, 10.0, MONDAY + timedelta(days=28)).anomalous


def test_a_lasting_shift_is_told_from_a_spike() -> None:
    rng = random.Random(2)
    base = [v * 4 + rng.choice((-1, 0, 1)) for v in weekly(WORKWEEK, 4)]
    spike = judge_day(base, 160.0, MONDAY + timedelta(days=28))
    assert spike.kind == "spike" and spike.shift_since is None
    shifted = base + [v * 4 * 3 for v in WORKWEEK[:5]]  # a week at three times the level, Mon-Fri
    (judgement,) = judge_recent(shifted, MONDAY, days=1)
    assert judgement.anomalous and judgement.kind == "level_shift_up"
    # the break is placed on the de-seasonalised series: within a few days of the true start (the
    # weekend before it barely moves when the level triples)
    assert judgement.shift_since is not None
    assert MONDAY + timedelta(days=24) <= judgement.shift_since <= MONDAY + timedelta(days=28)


def test_the_weekday_fallback_without_stl_still_finds_a_dip() -> None:
    history = weekly(WORKWEEK, 5)
    judgement = judge_day(history, 0.0, MONDAY + timedelta(days=35), SeriesSettings(use_stl=False))
    assert judgement.method == "weekday_median" and judgement.anomalous


def test_a_series_finding_carries_its_evidence() -> None:
    series = d.MetricSeries(
        "activities", "Activities by Ann", MONDAY, [*weekly(WORKWEEK, 4), 0.0], owner_id=uuid.uuid4()
    )
    (judgement,) = judge_recent(series.values, series.first_day, days=1)
    finding = d.series_finding(series, judgement, 3.5)
    assert finding is not None and finding.type == "engagement_drop" and finding.entity_type == "user"
    assert finding.entity_key == f"metric:activities:owner:{series.owner_id}"
    assert finding.evidence["value"] == 0.0 and finding.evidence["method"] == "stl"
    spike = d.MetricSeries("deals_won", "Deals won", MONDAY, [*weekly(WORKWEEK, 4), 60.0], engagement=False)
    (up,) = judge_recent(spike.values, spike.first_day, days=1)
    assert d.series_finding(spike, up, 3.5).type == "unusual_pattern"  # type: ignore[union-attr]


# --- deals -------------------------------------------------------------------------------------

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)
QUALIFY, PROPOSE = uuid.uuid4(), uuid.uuid4()


def deal(**fields: object) -> d.DealState:
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "name": "Acme",
        "owner_id": None,
        "stage_id": QUALIFY,
        "stage_name": "Qualification",
        "stage_position": 0,
        "stage_probability": 0.1,
        "is_open": True,
        "amount": Decimal("10000"),
        "expected_close_date": date(2026, 7, 1),
        "created_at": NOW - timedelta(days=100),
        "stage_entered_at": NOW - timedelta(days=100),
        "version": 1,
    }
    values.update(fields)
    return d.DealState(**values)  # type: ignore[arg-type]


def test_the_gap_model_learns_per_stage_and_falls_back() -> None:
    deals = [deal() for _ in range(3)]
    touches = {x.id: [x.created_at + timedelta(days=5 * k) for k in range(1, 6)] for x in deals}
    model = d.learn_gaps(deals, touches, {})
    days, basis, gaps = model.threshold(QUALIFY)
    assert (round(days, 3), basis, gaps) == (5.0, "stage_p90", 15)
    assert model.threshold(PROPOSE)[1] == "organization_p90"  # no gaps at that stage: the org's
    assert d.learn_gaps(deals[:1], {deals[0].id: touches[deals[0].id][:2]}, {}).threshold(QUALIFY) == (
        d.FALLBACK_STALE_DAYS,
        "fallback",
        0,
    )


def test_stale_needs_longer_quiet_than_the_bar_and_money_raises_severity() -> None:
    model = d.GapModel(by_stage={QUALIFY: (5.0, 20)})
    big, small, fresh = deal(amount=Decimal("900000")), deal(), deal(created_at=NOW, stage_entered_at=NOW)
    touched = {big.id: NOW - timedelta(days=12), small.id: NOW - timedelta(days=12), fresh.id: NOW}
    findings = d.detect_stale_deals([big, small, fresh], touched, model, NOW, large_amount=Decimal("500000"))
    by_id = {f.entity_id: f for f in findings}
    assert set(by_id) == {big.id, small.id}
    assert by_id[small.id].severity == "medium" and by_id[big.id].severity == "high"  # 2.4x the bar; + money
    assert d.detect_stale_deals([deal(is_open=False)], {}, model, NOW) == []


def test_deal_changes_compare_with_the_snapshot() -> None:
    current = deal(amount=Decimal("6000"), expected_close_date=date(2026, 8, 15))
    snapshot = d.DealSnapshotState(Decimal("10000"), date(2026, 7, 1), QUALIFY, NOW - timedelta(days=1), 7)
    stages = {QUALIFY: d.StageInfo("Qualification", 0, True), PROPOSE: d.StageInfo("Proposal", 1, True)}
    back = d.StageChange(8, current.id, PROPOSE, QUALIFY, NOW - timedelta(hours=2))
    seen = d.StageChange(7, current.id, QUALIFY, PROPOSE, NOW - timedelta(days=3))
    (finding,) = d.detect_deal_changes([current], {current.id: snapshot}, {current.id: [seen, back]}, stages, NOW)
    assert [c["kind"] for c in finding.evidence["changes"]] == ["close_date_pushed", "amount_cut", "stage_regression"]
    push, cut, regression = finding.evidence["changes"]
    assert (push["before"], push["after"], push["days"]) == ("2026-07-01", "2026-08-15", 45)
    assert (cut["before"], cut["after"], cut["cut_percent"]) == (10000.0, 6000.0, 40.0)
    assert (regression["before"], regression["after"]) == ("Proposal", "Qualification")
    improved = deal(amount=Decimal("12000"), expected_close_date=date(2026, 6, 20))
    assert d.detect_deal_changes([improved], {improved.id: snapshot}, {}, stages, NOW) == []


def test_fill_rate_drops_need_enough_records_and_a_real_drop() -> None:
    rates = [
        d.FillRate("contact.email", 3, 20, 95, 100),  # 15% vs 95%: a broken form
        d.FillRate("contact.phone", 1, 4, 90, 100),  # too few new records to say
        d.FillRate("deal.amount", 17, 20, 95, 100),  # 85% vs 95%: within noise
    ]
    (finding,) = d.detect_fill_rate_drops(rates)
    assert finding.entity_key == "fill_rate:contact.email" and finding.evidence["recent_percent"] == 15.0


def test_churn_risk_over_the_threshold_with_the_crossing() -> None:
    scores = [
        d.ChurnScore(uuid.uuid4(), "Ann", None, 72.0, 30.0, NOW, Decimal("50000")),
        d.ChurnScore(uuid.uuid4(), "Bob", None, 40.0, None, NOW, None),
    ]
    (finding,) = d.detect_churn_risk(scores, 50.0)
    assert finding.evidence["crossed_since_last_score"] is True and finding.money_at_stake == Decimal("50000")


@pytest.mark.parametrize(
    ("magnitude", "money", "severity"),
    [(1.0, None, "low"), (2.0, None, "medium"), (3.0, None, "high"), (5.0, None, "critical"), (1.0, 900, "medium")],
)
def test_severity_from_deviation_and_money(magnitude: float, money: int | None, severity: str) -> None:
    amount = None if money is None else Decimal(money)
    assert d.severity_for(magnitude, amount, Decimal(500)) == severity


def test_emails_escape_what_they_show_and_have_text_and_html() -> None:
    email = anomaly_email("a@example.com", "critical", "Deal <script>", "Body & more")
    assert "&lt;script&gt;" in email.html and "<script>" not in email.html
    assert "Deal <script>" in email.text and email.subject.startswith("[Okyaku] Critical")
    summary = weekly_summary_email(
        "a@example.com", SummaryContent("2026-11-23", "Line one.\nLine two.", [("low", "Gap", "No amount")])
    )
    assert "<p>Line one.</p><p>Line two.</p>" in summary.html
    assert "Your anomalies this week (1)" in summary.text and "- [low] Gap" in summary.text
