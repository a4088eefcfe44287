"""Anomalies in a daily series (activities per owner, new leads, emails, won/lost, pipeline value).

The baseline for a day comes from the days *before* it only, so a spike can never hide itself:

- fewer than :data:`MIN_HISTORY` days: "not enough history", never an alarm;
- fewer than :data:`STL_MIN_CYCLES` weeks: the median of the same weekday (all prior days when a
  weekday has fewer than two) and a MAD-based modified z-score (Iglewicz & Hoaglin);
- from three weekly cycles on: a robust STL decomposition (statsmodels) of the history; the
  expected value is the last trend level plus the weekday's seasonal term, the scale the MAD of
  the residuals.

Count metrics are judged after Anscombe's variance-stabilising transform (2*sqrt(x + 3/8): a
Poisson count's spread is then about 1 whatever its mean), with 1 as the floor of the scale, so
that 0 -> 2 on a quiet metric is not a "12-sigma" event and a day of 0 where 12 are usual is. A flagged day is
then checked for a change point (ruptures, PELT on the de-seasonalised series): a break followed by
days that all sit on the same side tells a lasting level shift from a one-day spike or dip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

MIN_HISTORY = 7  # days before the day judged; fewer gives "not enough history"
PERIOD = 7  # weekly seasonality
STL_MIN_CYCLES = 3
THRESHOLD = 3.5  # |modified z| at which a day is anomalous (Iglewicz & Hoaglin's cut-off)
MAD_TO_SIGMA = 1.4826
SHIFT_MIN_DAYS = 3  # days after a change point before it can be called a lasting shift
SHIFT_LOOKBACK = 28  # days the change-point check looks at

Method = Literal["insufficient_history", "weekday_median", "stl"]
Kind = Literal["spike", "dip", "level_shift_up", "level_shift_down"]


@dataclass(frozen=True)
class DayJudgement:
    """How one day compares with its baseline."""

    day: date
    value: float
    method: Method
    expected: float | None = None
    scale: float | None = None
    score: float | None = None  # modified z-score; positive above the baseline
    anomalous: bool = False
    kind: Kind | None = None
    shift_since: date | None = None
    # the shift's levels, de-seasonalised (and on the transformed scale for counts)
    level_before: float | None = None
    level_after: float | None = None
    history_days: int = 0

    def evidence(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "value": _round(self.value),
            "expected": _round(self.expected),
            "scale": _round(self.scale),
            "score": _round(self.score),
            "method": self.method,
            "kind": self.kind,
            "shift_since": self.shift_since.isoformat() if self.shift_since else None,
            "level_before": _round(self.level_before),
            "level_after": _round(self.level_after),
            "history_days": self.history_days,
        }


@dataclass
class SeriesSettings:
    threshold: float = THRESHOLD
    counts: bool = True  # a count metric: Poisson floor on the scale
    use_stl: bool = True
    use_change_points: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return float(ordered[mid]) if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def _mad(values: Sequence[float]) -> float:
    centre = _median(values)
    return _median([abs(v - centre) for v in values])


def _weekday_baseline(history: Sequence[float], index: int) -> tuple[float, float]:
    """Same-weekday median (or the overall one while a weekday has < 2 days) and the MAD scale
    of the history's deviations from its own weekday medians."""
    same_day = [history[i] for i in range(index % PERIOD, len(history), PERIOD)] if len(history) else []
    # history positions i with i % 7 == index % 7 share the judged day's weekday
    expected = _median(same_day) if len(same_day) >= 2 else _median(history)
    by_weekday: dict[int, list[float]] = {}
    for i, value in enumerate(history):
        by_weekday.setdefault(i % PERIOD, []).append(value)
    medians = {k: _median(v) if len(v) >= 2 else _median(history) for k, v in by_weekday.items()}
    deviations = [value - medians[i % PERIOD] for i, value in enumerate(history)]
    return expected, MAD_TO_SIGMA * _mad(deviations)


def _stl_baseline(history: Sequence[float]) -> tuple[float, float, list[float]] | None:
    """Expected value for the next day, the residuals' MAD scale, and the seasonal terms."""
    try:
        import numpy as np
        from statsmodels.tsa.seasonal import STL
    except ImportError:  # the Lambda layer does not carry statsmodels: weekday medians instead
        return None
    values = np.asarray(history, dtype=float)
    fit = STL(values, period=PERIOD, robust=True).fit()
    n = len(values)
    # The weekday effect as the median, over the last eight cycles, of each weekday's distance
    # from STL's (robust) trend. STL's own seasonal term can take in an outlier near the end of
    # the series and carry it into the same weekday of the next week: a false alarm a week after
    # every spike.
    detrended = [float(v) - float(t) for v, t in zip(values, fit.trend, strict=True)]
    effect = {
        phase: _median([detrended[i] for i in range(phase, n, PERIOD) if i >= n - 8 * PERIOD] or [0.0])
        for phase in range(PERIOD)
    }
    seasonal = [effect[i % PERIOD] for i in range(n)]
    deseasonalised = [float(v) - t for v, t in zip(values, seasonal, strict=True)]
    level = _median(deseasonalised[-PERIOD:])
    expected = level + effect[n % PERIOD]
    # the scale of this same predictor's one-step errors over the last eight weeks (STL's
    # residuals are in-sample, hence too small)
    errors = [
        deseasonalised[i] - _median(deseasonalised[i - PERIOD : i]) for i in range(max(PERIOD, n - 8 * PERIOD), n)
    ]
    return expected, MAD_TO_SIGMA * _mad(errors), seasonal


def judge_day(
    history: Sequence[float], value: float, day: date, settings: SeriesSettings | None = None
) -> DayJudgement:
    """Judge ``value`` (on ``day``) against ``history`` (the days before it, oldest first)."""
    settings = settings or SeriesSettings()
    n = len(history)
    if n < MIN_HISTORY:
        return DayJudgement(day=day, value=value, method="insufficient_history", history_days=n)
    raw_value = value
    if settings.counts:
        history = [_anscombe(v) for v in history]
        value = _anscombe(value)
    method: Method = "weekday_median"
    seasonal: list[float] | None = None
    stl = _stl_baseline(history) if settings.use_stl and n >= STL_MIN_CYCLES * PERIOD else None
    if stl is not None:
        expected, scale, seasonal = stl
        method = "stl"
    else:
        expected, scale = _weekday_baseline(history, n)
    # floors: a count's spread is about 1 after the transform; a flat amount series (MAD 0) would
    # make any wiggle infinite, so 1% of its level
    scale = max(scale, 1.0) if settings.counts else max(scale, 0.01 * max(abs(expected), 1.0))
    score = (value - expected) / scale
    anomalous = abs(score) >= settings.threshold
    kind: Kind | None = None
    shift: tuple[int, float, float] | None = None
    if anomalous:
        kind = "spike" if score > 0 else "dip"
        if settings.use_change_points:
            shift = _level_shift([*history, value], seasonal, score > 0, scale)
            if shift is not None:
                kind = "level_shift_up" if score > 0 else "level_shift_down"
    elif settings.use_change_points and n >= 2 * PERIOD:
        # a shift too small for one day to stand out, but held for several days, is found here
        shift = _level_shift([*history, value], seasonal, None, scale, settings.threshold)
        if shift is not None:
            anomalous = True
            kind = "level_shift_up" if shift[2] > shift[1] else "level_shift_down"
    since = day - timedelta(days=n - shift[0]) if shift is not None else None
    back = _inverse_anscombe if settings.counts else float
    return DayJudgement(
        day=day,
        value=raw_value,
        method=method,
        expected=back(expected),
        scale=scale,
        score=score,
        anomalous=anomalous,
        kind=kind,
        shift_since=since,
        level_before=shift[1] if shift else None,
        level_after=shift[2] if shift else None,
        history_days=n,
    )


def _anscombe(count: float) -> float:
    return 2.0 * math.sqrt(max(count, 0.0) + 0.375)


def _inverse_anscombe(value: float) -> float:
    return max(0.0, (value / 2.0) ** 2 - 0.375)


def _level_shift(
    series: Sequence[float],
    seasonal: Sequence[float] | None,
    upward: bool | None,
    scale: float,
    significance: float | None = None,
) -> tuple[int, float, float] | None:
    """(index of the break, level before, level after) when the series moved to a new level that
    every day since has kept; None for a one-off. ``upward`` None: either way. ``significance``:
    also require the break to be recent (the last two weeks) and the mean after it to differ by
    that many standard errors."""
    try:
        import numpy as np
        import ruptures as rpt
    except ImportError:
        return None
    start = max(0, len(series) - SHIFT_LOOKBACK)
    values = list(series[start:])
    if seasonal is not None:
        offsets = [*seasonal[start:], seasonal[len(seasonal) - PERIOD]]  # the judged day's phase
        values = [v - s for v, s in zip(values, offsets[: len(values)], strict=True)]
    else:
        by_weekday: dict[int, list[float]] = {}
        for i, v in enumerate(values):
            by_weekday.setdefault((start + i) % PERIOD, []).append(v)
        medians = {k: _median(v) for k, v in by_weekday.items()}
        values = [v - medians[(start + i) % PERIOD] for i, v in enumerate(values)]
    signal = np.asarray(values, dtype=float).reshape(-1, 1)
    # BIC-like penalty with the robust scale: a break must pay for itself
    penalty = 2.0 * math.log(len(values)) * scale**2
    breaks = rpt.Pelt(model="l2", min_size=SHIFT_MIN_DAYS, jump=1).fit(signal).predict(pen=penalty)
    inner = [b for b in breaks if b < len(values)]
    if not inner:
        return None
    last = inner[-1]
    before, after = values[:last], values[last:]
    if len(after) < SHIFT_MIN_DAYS or len(before) < SHIFT_MIN_DAYS:
        return None
    level_before, level_after = _median(before), _median(after)
    moved = level_after - level_before
    if upward is None:
        upward = moved > 0
    if (moved > 0) != upward or (significance is None and abs(moved) < 2.0 * scale):
        return None
    # lasting: every day since the break is nearer the new level than the old one
    midpoint = (level_before + level_after) / 2.0
    # (one day back on the old side is allowed once there are five or more)
    against = sum((v > midpoint) != upward for v in after)
    if against > (1 if len(after) >= 5 else 0):
        return None
    if significance is not None:
        if len(after) > 2 * PERIOD:
            return None
        standard_error = scale * math.sqrt(1.0 / len(after) + 1.0 / len(before))
        if abs(moved) / standard_error < significance:
            return None
    return start + last, level_before, level_after


def judge_recent(
    values: Sequence[float], first_day: date, *, days: int = 1, settings: SeriesSettings | None = None
) -> list[DayJudgement]:
    """Judge each of the last ``days`` points of ``values`` (``values[0]`` is ``first_day``)."""
    out = []
    for index in range(max(0, len(values) - days), len(values)):
        out.append(judge_day(values[:index], values[index], first_day + timedelta(days=index), settings))
    return out
