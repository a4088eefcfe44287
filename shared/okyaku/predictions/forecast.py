"""Pipeline forecast by simulation: each open deal is won with its predicted probability, for an
amount drawn from its predicted range, on a date drawn from its predicted close range; the
simulated totals by month and stage give the expected revenue and the P10-P90 range.

Deals are simulated independently: correlated outcomes (a bad quarter for everyone) would widen
the range, so the P10-P90 band is a lower bound on the real uncertainty."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class OpenDeal:
    deal_id: str
    stage: str
    probability: float
    amount: float
    amount_low: float
    amount_high: float
    close_days: float  # from today
    close_days_low: float
    close_days_high: float


def _triangular(
    rng: np.random.Generator,
    low: npt.NDArray[np.float64],
    mode: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    size: tuple[int, int],
) -> npt.NDArray[np.float64]:
    low = np.minimum(low, mode)
    high = np.maximum(high, mode)
    width = high - low
    flat = width <= 1e-9
    safe_high = np.where(flat, low + 1.0, high)
    safe_mode = np.where(flat, low + 0.5, mode)
    draws = rng.triangular(
        np.broadcast_to(low, size), np.broadcast_to(safe_mode, size), np.broadcast_to(safe_high, size)
    )
    return np.asarray(np.where(flat, low, draws), dtype=float)


def _add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def _summary(values: npt.NDArray[np.float64], expected: float) -> dict[str, float]:
    p10, p50, p90 = np.percentile(values, [10, 50, 90]) if len(values) else (0.0, 0.0, 0.0)
    return {
        "expected": round(expected, 2),
        "p10": round(float(p10), 2),
        "p50": round(float(p50), 2),
        "p90": round(float(p90), 2),
    }


# Cells (simulations x deals) drawn at once. The working set is a handful of float arrays of
# this size (≈ 8 bytes a cell each, ≈ 40 MB in all at 1M cells): a pipeline with more deals is
# simulated in column chunks whose per-simulation totals are summed, so memory stays bounded
# however many deals and simulations are asked for.
MAX_CELLS_PER_CHUNK = 1_000_000


def simulate_pipeline(
    deals: list[OpenDeal], *, today: date, months: int = 6, simulations: int = 5000, seed: int = 0
) -> dict[str, Any]:
    horizon = [_add_months(today.replace(day=1), i) for i in range(months)]
    rng = np.random.default_rng(seed)
    n = len(deals)
    # Per-simulation totals: one row per month, then "later" (beyond the horizon).
    month_totals = np.zeros((months + 1, simulations))
    month_expected = np.zeros(months + 1)
    stage_names = sorted({d.stage for d in deals}, key=[d.stage for d in deals].index)
    stage_totals = {stage: np.zeros(simulations) for stage in stage_names}
    stage_expected = dict.fromkeys(stage_names, 0.0)
    this_month = np.datetime64(today, "M")
    chunk = max(1, MAX_CELLS_PER_CHUNK // max(simulations, 1))
    for first in range(0, n, chunk):
        part = deals[first : first + chunk]
        shape = (simulations, len(part))
        probability = np.array([d.probability for d in part], dtype=float)
        won = rng.random(shape) < probability
        amount = _triangular(
            rng,
            np.array([d.amount_low for d in part]),
            np.array([d.amount for d in part]),
            np.array([d.amount_high for d in part]),
            shape,
        )
        days = _triangular(
            rng,
            np.array([d.close_days_low for d in part]),
            np.array([d.close_days for d in part]),
            np.array([d.close_days_high for d in part]),
            shape,
        )
        revenue = np.where(won, amount, 0.0)
        del won
        # Month index of each simulated close: 0 = this month, ..., months = later.
        close_day = np.datetime64(today, "D") + np.maximum(days, 0.0).astype("timedelta64[D]")
        del days
        slot = np.minimum((close_day.astype("datetime64[M]") - this_month).astype(int), months)
        del close_day
        for i in range(months + 1):
            mask = slot == i
            month_totals[i] += (revenue * mask).sum(axis=1)
            month_expected[i] += float((probability * (amount * mask).mean(axis=0)).sum())
        within = slot < months
        for stage in stage_names:
            members = [j for j, deal in enumerate(part) if deal.stage == stage]
            if members:
                stage_totals[stage] += (revenue[:, members] * within[:, members]).sum(axis=1)
                stage_expected[stage] += float(
                    (probability[members] * (amount[:, members] * within[:, members]).mean(axis=0)).sum()
                )

    by_month = [
        {"month": month.strftime("%Y-%m"), **_summary(month_totals[i], float(month_expected[i]))}
        for i, month in enumerate(horizon)
    ]
    stage_counts = {stage: sum(1 for d in deals if d.stage == stage) for stage in stage_names}
    by_stage = [
        {"stage": stage, "deals": stage_counts[stage], **_summary(stage_totals[stage], stage_expected[stage])}
        for stage in stage_names
    ]
    by_stage.sort(key=lambda s: -float(s["expected"]))  # type: ignore[arg-type]
    horizon_totals = month_totals[:months].sum(axis=0)
    return {
        "as_of": today.isoformat(),
        "months": months,
        "simulations": simulations,
        "deals": n,
        "total": _summary(horizon_totals, float(month_expected[:months].sum())),
        "by_month": by_month,
        "by_stage": by_stage,
        "later": _summary(month_totals[months], float(month_expected[months])),
        "assumptions": [
            "each open deal is won with its predicted probability, independently of the others",
            "amounts and close dates are drawn from each deal's predicted P10-P90 range (triangular)",
            "revenue is counted in the month the deal closes; 'later' is beyond the horizon",
        ],
    }


def add_days(today: date, days: float) -> date:
    return today + timedelta(days=round(days))
