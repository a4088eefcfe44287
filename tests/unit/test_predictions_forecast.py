"""The pipeline simulation: expectations add up, ranges are ordered, months and stages are right."""

from __future__ import annotations

from datetime import date

import pytest

from okyaku.predictions.forecast import OpenDeal, simulate_pipeline

TODAY = date(2026, 11, 25)


def deal(i, probability, amount, days, stage="Proposal", spread=0.0):
    return OpenDeal(str(i), stage, probability, amount, amount * (1 - spread), amount * (1 + spread), days, days, days)


def test_certain_deals_land_in_their_month_exactly():
    deals = [deal(1, 1.0, 1000.0, 2), deal(2, 1.0, 500.0, 10), deal(3, 1.0, 250.0, 40, stage="Negotiation")]
    result = simulate_pipeline(deals, today=TODAY, months=3, simulations=500)
    months = {m["month"]: m for m in result["by_month"]}
    assert months["2026-11"] == {"month": "2026-11", "expected": 1000.0, "p10": 1000.0, "p50": 1000.0, "p90": 1000.0}
    assert months["2026-12"]["expected"] == 500.0 and months["2026-12"]["p10"] == 500.0  # 5 December
    assert months["2027-01"]["expected"] == 250.0  # 4 January
    assert result["total"]["expected"] == 1750.0
    stages = {s["stage"]: s for s in result["by_stage"]}
    assert stages["Proposal"]["deals"] == 2 and stages["Proposal"]["expected"] == 1500.0
    assert stages["Negotiation"]["expected"] == 250.0


def test_uncertain_deals_spread_between_p10_and_p90():
    deals = [deal(i, 0.3, 1000.0, 20, spread=0.2) for i in range(40)]
    result = simulate_pipeline(deals, today=TODAY, months=2, simulations=4000, seed=1)
    total = result["total"]
    assert total["expected"] == pytest.approx(40 * 0.3 * 1000.0, rel=0.03)
    assert total["p10"] < total["p50"] < total["p90"]
    assert total["p10"] < total["expected"] < total["p90"]
    # Same seed, same answer.
    assert simulate_pipeline(deals, today=TODAY, months=2, simulations=4000, seed=1) == result


def test_deals_beyond_the_horizon_count_as_later():
    result = simulate_pipeline([deal(1, 1.0, 100.0, 400)], today=TODAY, months=6, simulations=200)
    assert result["total"]["expected"] == 0.0
    assert result["later"]["expected"] == 100.0


def test_an_empty_pipeline_is_zero():
    result = simulate_pipeline([], today=TODAY, months=2, simulations=100)
    assert result["deals"] == 0 and result["total"]["p90"] == 0.0 and len(result["by_month"]) == 2


def test_a_large_pipeline_is_simulated_in_bounded_memory(monkeypatch):
    import tracemalloc

    from okyaku.predictions import forecast

    deals = [deal(i, 0.5, 1000.0, 15 + i % 60, stage=f"S{i % 3}", spread=0.1) for i in range(600)]
    tracemalloc.start()
    result = simulate_pipeline(deals, today=TODAY, months=3, simulations=20_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # Dense simulations x deals arrays would be 12M cells (≈ 96 MB each, several at once); chunks keep it small.
    assert peak < 80 * 1024 * 1024, f"peak {peak / 2**20:.0f} MB"
    assert result["deals"] == 600 and sum(s["deals"] for s in result["by_stage"]) == 600
    assert result["total"]["expected"] == pytest.approx(sum(m["expected"] for m in result["by_month"]), rel=1e-6)
    # Chunked or not, the same expectation (each deal: 0.5 x 1000 within the horizon or later).
    monkeypatch.setattr(forecast, "MAX_CELLS_PER_CHUNK", 20_000 * 7)
    chunked = simulate_pipeline(deals, today=TODAY, months=3, simulations=20_000)
    both = result["total"]["expected"] + result["later"]["expected"]
    assert both == pytest.approx(600 * 500.0, rel=0.01)
    assert chunked["total"]["expected"] + chunked["later"]["expected"] == pytest.approx(both, rel=0.01)
    assert chunked["total"]["expected"] == pytest.approx(result["total"]["expected"], rel=0.02)
