"""Synthetic daily series with weekly seasonality and injected events, and the recall / false
alarm count of :func:`okyaku.anomalies.series.judge_day` on them (tests and benches).

Each metric has a weekday and a weekend level; counts are Poisson, amounts Gaussian. Events are
placed at random in the judged weeks: one-day spikes and dips of ``size`` times the metric's own
noise (never below zero), and one lasting level shift. A spike or dip is found when its day is
flagged; a shift when one of its first :data:`SHIFT_GRACE_DAYS` days is. A run of flagged days that
belong to no event is one false alarm (days after a shift's onset belong to it)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from okyaku.anomalies.series import SeriesSettings, judge_day

SHIFT_GRACE_DAYS = 7  # a lasting shift is found within its first week


@dataclass(frozen=True)
class MetricModel:
    name: str
    weekday: float
    weekend: float
    counts: bool = True
    noise: float = 0.0  # relative Gaussian noise for amounts

    def mean(self, index: int, start: date) -> float:
        return self.weekend if (start + timedelta(days=index)).weekday() >= 5 else self.weekday

    def sd(self, mean: float) -> float:
        return math.sqrt(max(mean, 1.0)) if self.counts else self.noise * mean


METRICS = (
    MetricModel("activities_per_owner", 12, 2),
    MetricModel("new_leads", 20, 6),
    MetricModel("emails", 40, 5),
    MetricModel("deals_won", 2, 0.3),
    MetricModel("pipeline_value", 1_200_000, 1_200_000, counts=False, noise=0.01),
)


@dataclass
class Event:
    kind: str  # spike | dip | shift_up | shift_down
    day: int
    until: int  # last day index it covers


@dataclass
class Scenario:
    metric: MetricModel
    start: date
    values: list[float]
    judged_from: int
    events: list[Event] = field(default_factory=list)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def make_scenario(
    metric: MetricModel,
    rng: random.Random,
    *,
    history_weeks: int = 4,
    judged_weeks: int = 8,
    size: float = 6.0,
    shift_factor: float = 0.5,
) -> Scenario:
    """``history_weeks`` of clean history, then ``judged_weeks`` with 2 spikes, 2 dips, 1 shift."""
    start = date(2026, 1, 5)  # a Monday
    judged_from = history_weeks * 7
    total = judged_from + judged_weeks * 7
    means = [metric.mean(i, start) for i in range(total)]
    shift_day = rng.randrange(judged_from + judged_weeks * 7 // 2, total - 10)
    up = rng.random() < 0.5
    factor = (1.0 / shift_factor) if up else shift_factor
    for i in range(shift_day, total):
        means[i] *= factor
    taken = set(range(shift_day - 1, total))
    events = [Event("shift_up" if up else "shift_down", shift_day, total - 1)]
    for kind in ("spike", "spike", "dip", "dip"):
        while True:
            day = rng.randrange(judged_from, shift_day - 1)
            if not {day - 1, day, day + 1} & taken and (kind == "spike" or metric.mean(day, start) == metric.weekday):
                break
        taken |= {day - 1, day, day + 1}
        events.append(Event(kind, day, day))
    values: list[float] = []
    for i, mean in enumerate(means):
        if metric.counts:
            value: float = _poisson(rng, mean)
        else:
            value = rng.gauss(mean, metric.sd(mean))
        for event in events:
            if event.day == i and event.kind == "spike":
                value = mean + size * metric.sd(mean)
            elif event.day == i and event.kind == "dip":
                value = max(0.0, mean - size * metric.sd(mean))
        values.append(float(round(value)) if metric.counts else value)
    return Scenario(metric, start, values, judged_from, sorted(events, key=lambda e: e.day))


@dataclass
class Score:
    found: int = 0
    events: int = 0
    false_alarms: int = 0
    judged_days: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [found, total]

    @property
    def recall(self) -> float:
        return self.found / self.events if self.events else 1.0

    def add(self, other: Score) -> None:
        self.found += other.found
        self.events += other.events
        self.false_alarms += other.false_alarms
        self.judged_days += other.judged_days
        for kind, (found, total) in other.by_kind.items():
            entry = self.by_kind.setdefault(kind, [0, 0])
            entry[0] += found
            entry[1] += total


def evaluate(scenario: Scenario, settings: SeriesSettings | None = None) -> Score:
    """Judge every day of the judged weeks on the days before it, as the daily scan does."""
    settings = settings or SeriesSettings(counts=scenario.metric.counts)
    flagged = set()
    for index in range(scenario.judged_from, len(scenario.values)):
        day = scenario.start + timedelta(days=index)
        if judge_day(scenario.values[:index], scenario.values[index], day, settings).anomalous:
            flagged.add(index)
    score = Score(events=len(scenario.events), judged_days=len(scenario.values) - scenario.judged_from)
    covered: set[int] = set()
    for event in scenario.events:
        window = range(event.day, min(event.until, event.day + SHIFT_GRACE_DAYS - 1) + 1)
        hit = any(i in flagged for i in window)
        score.found += hit
        kind = "shift" if event.kind.startswith("shift") else event.kind
        entry = score.by_kind.setdefault(kind, [0, 0])
        entry[0] += hit
        entry[1] += 1
        covered |= set(range(event.day, event.until + 1))
    # consecutive flagged days are one alarm: the scan updates the open anomaly, it does not
    # raise a new one
    false_days = sorted(flagged - covered)
    score.false_alarms = sum(1 for i, day in enumerate(false_days) if i == 0 or false_days[i - 1] != day - 1)
    return score


def evaluate_metrics(
    metrics: Sequence[MetricModel] = METRICS, *, trials: int = 10, seed: int = 1, size: float = 6.0
) -> dict[str, Score]:
    rng = random.Random(seed)
    results: dict[str, Score] = {}
    for metric in metrics:
        total = Score()
        for _ in range(trials):
            total.add(evaluate(make_scenario(metric, rng, size=size)))
        results[metric.name] = total
    return results
