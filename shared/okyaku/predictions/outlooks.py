"""Amount and close-date estimates of open deals, from the deal's own figures where it has them,
else the learnt regressors (or defaults)."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from okyaku.db.models import Deal
from okyaku.predictions.factors import ScoredRow
from okyaku.predictions.forecast import add_days
from okyaku.predictions.tabular import Dataset
from okyaku.predictions.trained_models import CYCLE_DEFAULT_DAYS, LoadedModel, load_regressor


@dataclass
class DealOutlook:
    amount: float
    amount_low: float
    amount_high: float
    amount_source: str
    close_days: float
    close_days_low: float
    close_days_high: float
    close_source: str
    stage: str
    expected_close_date: date | None


def deal_outlooks(session: Session, dataset: Dataset, today: date) -> list[DealOutlook]:
    """Amount and close-date estimates for open deals (rows of ``dataset``, features as of now)."""
    if not len(dataset):
        return []
    amount_model, amount_method = load_regressor(session, "deal_amount")
    cycle_model, cycle_method = load_regressor(session, "deal_cycle")
    ids = [uuid.UUID(i) for i in dataset.ids]
    deals = {d.id: d for d in session.scalars(select(Deal).where(Deal.id.in_(ids)))}
    n = len(dataset)
    amounts = amount_model.predict(dataset) if amount_model else (np.zeros(n), np.zeros(n), np.zeros(n))
    default = CYCLE_DEFAULT_DAYS
    cycles = (
        cycle_model.predict(dataset)
        if cycle_model
        else (np.full(n, default[0]), np.full(n, default[1]), np.full(n, default[2]))
    )
    outlooks = []
    for i, deal_id in enumerate(ids):
        deal = deals[deal_id]
        if deal.amount is not None:
            amount = float(deal.amount)
            low = high = amount
            amount_source = "deal"
        else:
            amount, low, high = float(amounts[0][i]), float(amounts[1][i]), float(amounts[2][i])
            amount_source = amount_method if amount_model else "none"
        days, days_low, days_high = float(cycles[0][i]), float(cycles[1][i]), float(cycles[2][i])
        close_source = cycle_method if cycle_model else "default"
        expected = deal.expected_close_date
        if expected is not None and expected >= today and close_source != "model":
            # Without a learnt cycle, the rep's date is the best point estimate.
            days = float((expected - today).days)
            days_low, days_high = min(days_low, days), max(days_high, days)
            close_source = "expected_close_date"
        outlooks.append(
            DealOutlook(
                amount=amount,
                amount_low=min(low, amount),
                amount_high=max(high, amount),
                amount_source=amount_source,
                close_days=max(days, 0.0),
                close_days_low=max(min(days_low, days), 0.0),
                close_days_high=max(days_high, days),
                close_source=close_source,
                stage=str(dataset.columns["stage"][i] or "(unknown)"),
                expected_close_date=expected,
            )
        )
    return outlooks


def _round(value: float) -> float:
    return round(value, 2) if math.isfinite(value) else 0.0


def deal_fields(scored: ScoredRow, outlook: DealOutlook, loaded: LoadedModel, today: date) -> dict[str, Any]:
    probability = scored.probability
    warnings = []
    if outlook.expected_close_date is not None and outlook.expected_close_date < today:
        warnings.append(f"the expected close date ({outlook.expected_close_date.isoformat()}) has passed")
    return {
        "close_probability": round(probability, 4),
        "predicted_amount": _round(outlook.amount),
        "amount_interval": {"p10": _round(outlook.amount_low), "p90": _round(outlook.amount_high)},
        "amount_source": outlook.amount_source,
        "expected_value": _round(probability * outlook.amount),
        "predicted_close_date": add_days(today, outlook.close_days).isoformat(),
        "close_date_interval": {
            "p10": add_days(today, outlook.close_days_low).isoformat(),
            "p90": add_days(today, outlook.close_days_high).isoformat(),
        },
        "close_date_source": outlook.close_source,
        "expected_close_date": None if outlook.expected_close_date is None else outlook.expected_close_date.isoformat(),
        "stage": outlook.stage,
        "confidence": loaded.confidence(),
        "risk_factors": [f.as_dict() for f in scored.factors if f.impact < 0][:5],
        "warnings": warnings,
    }
