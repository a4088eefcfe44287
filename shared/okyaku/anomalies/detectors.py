"""The detectors: pure functions from an organization's figures to :class:`Finding` values, each
with the evidence that made it.

Severity comes from the size of the deviation (how many times over the detector's own bar) and
the money at stake (one level up when the deal is among the organization's largest open deals).
"""

from __future__ import annotations

import bisect
import itertools
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from okyaku.anomalies.series import DayJudgement

AnomalyType = Literal["stale_deal", "deal_change", "data_gap", "churn_risk", "engagement_drop", "unusual_pattern"]
Severity = Literal["low", "medium", "high", "critical"]
SEVERITY_ORDER: tuple[Severity, ...] = ("low", "medium", "high", "critical")

# stale_deal: the bar is the organization's own 90th percentile of the gaps between touches of a
# deal at that stage (touch = activity or stage change), from MIN_GAPS gaps; with fewer, the
# organization's gaps over every stage; with fewer still, FALLBACK_STALE_DAYS.
STALE_GAP_QUANTILE = 0.9
MIN_GAPS = 10
FALLBACK_STALE_DAYS = 14.0
MIN_STALE_DAYS = 3.0  # never stale before three quiet days (a weekend is not neglect)

# data_gap: a field's fill rate among last week's new records vs the 12 weeks before
FILL_RATE_MIN_RECENT = 10
FILL_RATE_MIN_BASELINE = 20
FILL_RATE_MIN_DROP = 0.2
FILL_RATE_MIN_Z = 3.0


@dataclass(frozen=True)
class Finding:
    type: AnomalyType
    entity_type: str  # deal, contact, user, organization
    entity_id: uuid.UUID | None
    entity_key: str  # dedup key: one open anomaly per (type, entity_key)
    title: str
    description: str
    severity: Severity
    evidence: dict[str, Any]
    owner_id: uuid.UUID | None = None
    deviation: float | None = None
    money_at_stake: Decimal | None = None


def severity_for(magnitude: float, money: Decimal | None = None, large_amount: Decimal | None = None) -> Severity:
    """``magnitude``: the deviation over the detector's bar (1 = just over it)."""
    level = 0 if magnitude < 1.5 else 1 if magnitude < 2.5 else 2 if magnitude < 4 else 3
    if money is not None and large_amount is not None and money >= large_amount:
        level += 1
    return SEVERITY_ORDER[min(level, 3)]


def large_deal_amount(amounts: Iterable[Decimal | None]) -> Decimal | None:
    """The organization's 90th percentile of open deal amounts (None under ten deals)."""
    known = sorted(a for a in amounts if a is not None)
    if len(known) < 10:
        return None
    return known[min(len(known) - 1, math.ceil(0.9 * len(known)) - 1)]


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- stale deals -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DealState:
    id: uuid.UUID
    name: str
    owner_id: uuid.UUID | None
    stage_id: uuid.UUID
    stage_name: str
    stage_position: int
    stage_probability: float
    is_open: bool
    amount: Decimal | None
    expected_close_date: date | None
    created_at: datetime
    stage_entered_at: datetime
    version: int


@dataclass(frozen=True)
class StageChange:
    id: int
    deal_id: uuid.UUID
    from_stage_id: uuid.UUID | None
    to_stage_id: uuid.UUID
    changed_at: datetime


@dataclass
class GapModel:
    """Per stage: the quiet time after which a deal at that stage is stale, and why."""

    by_stage: dict[uuid.UUID, tuple[float, int]] = field(default_factory=dict)  # days, gaps seen
    organization: tuple[float, int] | None = None

    def threshold(self, stage_id: uuid.UUID) -> tuple[float, str, int]:
        if stage_id in self.by_stage:
            days, gaps = self.by_stage[stage_id]
            return max(days, MIN_STALE_DAYS), "stage_p90", gaps
        if self.organization is not None:
            days, gaps = self.organization
            return max(days, MIN_STALE_DAYS), "organization_p90", gaps
        return FALLBACK_STALE_DAYS, "fallback", 0


def learn_gaps(
    deals: Sequence[DealState],
    touches: Mapping[uuid.UUID, Sequence[datetime]],
    stage_changes: Mapping[uuid.UUID, Sequence[StageChange]],
) -> GapModel:
    """The gaps between consecutive touches of each deal (activities and stage changes), each
    counted at the stage the deal was in when the gap ended. The current, still open gap of an
    open deal is left out: it is what gets judged."""
    by_stage: dict[uuid.UUID, list[float]] = {}
    for deal in deals:
        history = sorted(stage_changes.get(deal.id, ()), key=lambda c: c.changed_at)
        moments = sorted([deal.created_at, *touches.get(deal.id, ()), *(c.changed_at for c in history)])
        change_times = [c.changed_at for c in history]
        for before, after in itertools.pairwise(moments):
            gap = (after - before).total_seconds() / 86400.0
            if gap <= 0:
                continue
            index = bisect.bisect_right(change_times, after) - 1
            stage = history[index].to_stage_id if index >= 0 else deal.stage_id
            by_stage.setdefault(stage, []).append(gap)
    model = GapModel()
    every: list[float] = []
    for stage, gaps in by_stage.items():
        every.extend(gaps)
        if len(gaps) >= MIN_GAPS:
            model.by_stage[stage] = (_quantile(gaps, STALE_GAP_QUANTILE), len(gaps))
    if len(every) >= MIN_GAPS:
        model.organization = (_quantile(every, STALE_GAP_QUANTILE), len(every))
    return model


def detect_stale_deals(
    deals: Sequence[DealState],
    last_touch: Mapping[uuid.UUID, datetime],
    gaps: GapModel,
    now: datetime,
    large_amount: Decimal | None = None,
) -> list[Finding]:
    findings = []
    for deal in deals:
        if not deal.is_open:
            continue
        touched = max(t for t in (last_touch.get(deal.id), deal.stage_entered_at, deal.created_at) if t is not None)
        idle_days = (now - touched).total_seconds() / 86400.0
        threshold, basis, gaps_seen = gaps.threshold(deal.stage_id)
        if idle_days <= threshold:
            continue
        magnitude = idle_days / threshold
        findings.append(
            Finding(
                type="stale_deal",
                entity_type="deal",
                entity_id=deal.id,
                entity_key=f"deal:{deal.id}",
                title=f"No activity on {deal.name} for {idle_days:.0f} days",
                description=(
                    f"{deal.name} has been quiet for {idle_days:.0f} days at stage {deal.stage_name}; "
                    f"deals at that stage are usually touched within {threshold:.1f} days."
                ),
                severity=severity_for(magnitude, deal.amount, large_amount),
                owner_id=deal.owner_id,
                deviation=round(magnitude, 3),
                money_at_stake=deal.amount,
                evidence={
                    "idle_days": round(idle_days, 1),
                    "last_touch_at": touched.isoformat(),
                    "stage": deal.stage_name,
                    "threshold_days": round(threshold, 1),
                    "threshold_basis": basis,
                    "gaps_seen": gaps_seen,
                    "amount": _money(deal.amount),
                },
            )
        )
    return findings


# --- deal changes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DealSnapshotState:
    amount: Decimal | None
    expected_close_date: date | None
    stage_id: uuid.UUID | None
    captured_at: datetime
    stage_history_id: int | None = None


@dataclass(frozen=True)
class StageInfo:
    name: str
    position: int
    is_open: bool


def detect_deal_changes(
    deals: Sequence[DealState],
    snapshots: Mapping[uuid.UUID, DealSnapshotState],
    stage_changes: Mapping[uuid.UUID, Sequence[StageChange]],
    stages: Mapping[uuid.UUID, StageInfo],
    since_default: datetime,
    large_amount: Decimal | None = None,
) -> list[Finding]:
    """Close date pushed out and amount cut (against the last scan's snapshot), stage moved back
    (the stage history rows after the last one that snapshot saw; for a deal without a snapshot,
    the rows since ``since_default``)."""
    findings = []
    for deal in deals:
        if not deal.is_open:
            continue
        snapshot = snapshots.get(deal.id)
        changes: list[dict[str, Any]] = []
        magnitude = 0.0
        if snapshot is not None:
            before_date, after_date = snapshot.expected_close_date, deal.expected_close_date
            if before_date is not None and after_date is not None and after_date > before_date:
                days = (after_date - before_date).days
                changes.append(
                    {
                        "kind": "close_date_pushed",
                        "before": before_date.isoformat(),
                        "after": after_date.isoformat(),
                        "days": days,
                    }
                )
                magnitude = max(magnitude, 1.0 + days / 30.0)
            before_amount, after_amount = snapshot.amount, deal.amount
            if before_amount is not None and after_amount is not None and after_amount < before_amount:
                cut = float((before_amount - after_amount) / before_amount) if before_amount else 1.0
                changes.append(
                    {
                        "kind": "amount_cut",
                        "before": _money(before_amount),
                        "after": _money(after_amount),
                        "cut_percent": round(100 * cut, 1),
                    }
                )
                magnitude = max(magnitude, 1.0 + cut * 5)
        seen = snapshot.stage_history_id if snapshot is not None else None
        for change in stage_changes.get(deal.id, ()):
            if change.from_stage_id is None:
                continue
            if seen is not None and change.id <= seen:
                continue
            if seen is None and (snapshot is not None or change.changed_at <= since_default):
                continue
            before_stage, after_stage = stages.get(change.from_stage_id), stages.get(change.to_stage_id)
            if before_stage is None or after_stage is None or not (before_stage.is_open and after_stage.is_open):
                continue
            if after_stage.position < before_stage.position:
                steps = before_stage.position - after_stage.position
                changes.append(
                    {
                        "kind": "stage_regression",
                        "before": before_stage.name,
                        "after": after_stage.name,
                        "steps": steps,
                        "at": change.changed_at.isoformat(),
                    }
                )
                magnitude = max(magnitude, 1.0 + steps)
        if not changes:
            continue
        kinds = ", ".join(sorted({c["kind"].replace("_", " ") for c in changes}))
        findings.append(
            Finding(
                type="deal_change",
                entity_type="deal",
                entity_id=deal.id,
                entity_key=f"deal:{deal.id}",
                title=f"{deal.name}: {kinds}",
                description="; ".join(_describe_change(c) for c in changes),
                severity=severity_for(magnitude, deal.amount, large_amount),
                owner_id=deal.owner_id,
                deviation=round(magnitude, 3),
                money_at_stake=deal.amount,
                evidence={"changes": changes, "amount": _money(deal.amount), "stage": deal.stage_name},
            )
        )
    return findings


def _describe_change(change: Mapping[str, Any]) -> str:
    kind = change["kind"]
    if kind == "close_date_pushed":
        return f"close date pushed out {change['days']} days ({change['before']} -> {change['after']})"
    if kind == "amount_cut":
        return f"amount cut {change['cut_percent']}% ({change['before']} -> {change['after']})"
    return f"stage moved back from {change['before']} to {change['after']}"


# --- data gaps ---------------------------------------------------------------------------------


def detect_missing_deal_fields(deals: Sequence[DealState]) -> list[Finding]:
    findings = []
    for deal in deals:
        if not deal.is_open:
            continue
        missing = [
            name
            for name, value in (("amount", deal.amount), ("expected_close_date", deal.expected_close_date))
            if value is None
        ]
        if not missing:
            continue
        findings.append(
            Finding(
                type="data_gap",
                entity_type="deal",
                entity_id=deal.id,
                entity_key=f"deal:{deal.id}",
                title=f"{deal.name} has no {' or '.join(m.replace('_', ' ') for m in missing)}",
                description="The pipeline and forecasts need an amount and an expected close date for every open deal.",
                severity="medium" if len(missing) == 2 else "low",
                owner_id=deal.owner_id,
                evidence={"missing": missing, "stage": deal.stage_name},
            )
        )
    return findings


def detect_contacts_without_email(total: int, missing_ids: Sequence[uuid.UUID]) -> list[Finding]:
    if not missing_ids or total == 0:
        return []
    share = len(missing_ids) / total
    return [
        Finding(
            type="data_gap",
            entity_type="organization",
            entity_id=None,
            entity_key="missing:contact.email",
            title=f"{len(missing_ids)} contacts have no email address",
            description=f"{len(missing_ids)} of {total} contacts ({100 * share:.1f}%) cannot be emailed.",
            severity="low" if share < 0.05 else "medium" if share < 0.2 else "high",
            evidence={
                "missing": len(missing_ids),
                "total": total,
                "share_percent": round(100 * share, 1),
                "sample_contact_ids": [str(i) for i in missing_ids[:10]],
            },
        )
    ]


@dataclass(frozen=True)
class FillRate:
    field: str  # "contact.email"
    recent_filled: int
    recent_total: int
    baseline_filled: int
    baseline_total: int


def detect_fill_rate_drops(rates: Sequence[FillRate]) -> list[Finding]:
    """A field filled much less often on last week's new records than before (a broken form or
    import), judged by a two-proportion z-test so that a handful of records cannot trigger it."""
    findings = []
    for rate in rates:
        if rate.recent_total < FILL_RATE_MIN_RECENT or rate.baseline_total < FILL_RATE_MIN_BASELINE:
            continue
        recent = rate.recent_filled / rate.recent_total
        baseline = rate.baseline_filled / rate.baseline_total
        pooled = (rate.recent_filled + rate.baseline_filled) / (rate.recent_total + rate.baseline_total)
        spread = math.sqrt(max(pooled * (1 - pooled), 1e-9) * (1 / rate.recent_total + 1 / rate.baseline_total))
        z = (baseline - recent) / spread
        if baseline - recent < FILL_RATE_MIN_DROP or z < FILL_RATE_MIN_Z:
            continue
        findings.append(
            Finding(
                type="data_gap",
                entity_type="organization",
                entity_id=None,
                entity_key=f"fill_rate:{rate.field}",
                title=f"{rate.field} is filled on {100 * recent:.0f}% of new records (was {100 * baseline:.0f}%)",
                description=(
                    f"{rate.recent_filled} of {rate.recent_total} records created in the last 7 days have "
                    f"{rate.field}, against {rate.baseline_filled} of {rate.baseline_total} before."
                ),
                severity=severity_for(z / FILL_RATE_MIN_Z),
                deviation=round(z, 3),
                evidence={
                    "field": rate.field,
                    "recent_percent": round(100 * recent, 1),
                    "baseline_percent": round(100 * baseline, 1),
                    "recent": [rate.recent_filled, rate.recent_total],
                    "baseline": [rate.baseline_filled, rate.baseline_total],
                    "z": round(z, 2),
                },
            )
        )
    return findings


# --- churn risk --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChurnScore:
    contact_id: uuid.UUID
    name: str
    owner_id: uuid.UUID | None
    score: float  # 0-100
    previous_score: float | None
    scored_at: datetime
    customer_value: Decimal | None


def detect_churn_risk(scores: Sequence[ChurnScore], threshold: float) -> list[Finding]:
    findings = []
    for item in scores:
        if item.score < threshold:
            continue
        crossed = item.previous_score is not None and item.previous_score < threshold
        findings.append(
            Finding(
                type="churn_risk",
                entity_type="contact",
                entity_id=item.contact_id,
                entity_key=f"contact:{item.contact_id}",
                title=f"{item.name}: churn risk {item.score:.0f}/100",
                description=(
                    f"The churn model scores {item.name} at {item.score:.0f}/100"
                    + (f", up from {item.previous_score:.0f}" if item.previous_score is not None else "")
                    + f" (alert threshold {threshold:.0f})."
                ),
                severity=severity_for(1.0 + (item.score - threshold) / max(100.0 - threshold, 1.0) * 2.5),
                owner_id=item.owner_id,
                deviation=round(item.score - threshold, 2),
                money_at_stake=item.customer_value,
                evidence={
                    "score": round(item.score, 1),
                    "previous_score": None if item.previous_score is None else round(item.previous_score, 1),
                    "threshold": threshold,
                    "crossed_since_last_score": crossed,
                    "scored_at": item.scored_at.isoformat(),
                    "customer_value": _money(item.customer_value),
                },
            )
        )
    return findings


# --- series ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSeries:
    metric: str  # activities, emails, new_leads, deals_won, deals_lost, pipeline_value
    label: str
    first_day: date
    values: list[float]
    counts: bool = True
    owner_id: uuid.UUID | None = None
    engagement: bool = True  # a drop is an engagement_drop (else an unusual_pattern)

    @property
    def entity_key(self) -> str:
        return f"metric:{self.metric}" + (f":owner:{self.owner_id}" if self.owner_id else "")

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=len(self.values) - 1)


# Days of the series an anomaly keeps as its evidence: what the console's chart draws.
SERIES_WINDOW_DAYS = 28


def series_window(series: MetricSeries, judged: Sequence[DayJudgement]) -> dict[str, Any]:
    """The last weeks of the series with the baseline of each judged day and whether it was
    flagged: enough to draw the series, its baseline and the flagged days without re-reading it."""
    values = series.values[-SERIES_WINDOW_DAYS:]
    first = series.last_day - timedelta(days=len(values) - 1)
    return {
        "first_day": first.isoformat(),
        "values": [round(float(v), 3) for v in values],
        "judged": [
            {
                "day": j.day.isoformat(),
                "expected": None if j.expected is None else round(float(j.expected), 3),
                "anomalous": j.anomalous,
            }
            for j in judged
        ],
    }


def series_finding(
    series: MetricSeries, judgement: DayJudgement, threshold: float, judged: Sequence[DayJudgement] = ()
) -> Finding | None:
    if not judgement.anomalous or judgement.score is None or judgement.expected is None:
        return None
    down = judgement.score < 0
    kind = judgement.kind or ("dip" if down else "spike")
    anomaly_type: AnomalyType = "engagement_drop" if down and series.engagement else "unusual_pattern"
    lasting = kind.startswith("level_shift")
    what = {
        "spike": "spiked",
        "dip": "dropped",
        "level_shift_up": "moved to a higher level",
        "level_shift_down": "moved to a lower level",
    }[kind]
    money = None
    if not series.counts:
        money = Decimal(str(round(abs(judgement.value - judgement.expected), 2)))
    since = f" since {judgement.shift_since.isoformat()}" if judgement.shift_since else ""
    return Finding(
        type=anomaly_type,
        entity_type="user" if series.owner_id else "organization",
        entity_id=series.owner_id,
        entity_key=series.entity_key,
        title=f"{series.label} {what}{since}",
        description=(
            f"{series.label} on {judgement.day.isoformat()}: {_figure(judgement.value)} against an expected "
            f"{_figure(judgement.expected)} ({judgement.method.replace('_', ' ')} baseline over "
            f"{judgement.history_days} days)" + (", a lasting shift rather than a one-day blip." if lasting else ".")
        ),
        severity=severity_for(abs(judgement.score) / threshold),
        owner_id=series.owner_id,
        deviation=round(judgement.score, 3),
        money_at_stake=money,
        evidence={
            "metric": series.metric,
            **judgement.evidence(),
            **({"series": series_window(series, judged)} if judged else {}),
        },
    )


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:,.1f}"


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)
