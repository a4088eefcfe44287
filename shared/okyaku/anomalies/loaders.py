"""What the detectors read, loaded in a few set-based queries per organization (the session is
organization-scoped: row-level security keeps every query inside it)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from okyaku.anomalies.detectors import (
    ChurnScore,
    DealSnapshotState,
    DealState,
    FillRate,
    MetricSeries,
    StageChange,
    StageInfo,
)

SERIES_DAYS = 120  # history the series detectors look at


def load_deals(session: Session) -> list[DealState]:
    rows = session.execute(
        text(
            """
            SELECT d.id, d.name, d.owner_id, d.stage_id, s.name AS stage_name, s.position,
                   s.probability, NOT (s.is_won OR s.is_lost) AS is_open, d.amount,
                   d.expected_close_date, d.created_at, d.stage_entered_at, d.version
            FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id
            """
        )
    )
    return [
        DealState(
            id=r.id,
            name=r.name,
            owner_id=r.owner_id,
            stage_id=r.stage_id,
            stage_name=r.stage_name,
            stage_position=r.position,
            stage_probability=float(r.probability),
            is_open=r.is_open,
            amount=r.amount,
            expected_close_date=r.expected_close_date,
            created_at=r.created_at,
            stage_entered_at=r.stage_entered_at,
            version=r.version,
        )
        for r in rows
    ]


def load_stages(session: Session) -> dict[uuid.UUID, StageInfo]:
    rows = session.execute(text("SELECT id, name, position, NOT (is_won OR is_lost) AS is_open FROM pipeline_stages"))
    return {r.id: StageInfo(name=r.name, position=r.position, is_open=r.is_open) for r in rows}


def load_stage_changes(session: Session) -> dict[uuid.UUID, list[StageChange]]:
    out: dict[uuid.UUID, list[StageChange]] = defaultdict(list)
    rows = session.execute(
        text("SELECT id, deal_id, from_stage_id, to_stage_id, changed_at FROM deal_stage_history ORDER BY id")
    )
    for r in rows:
        out[r.deal_id].append(StageChange(r.id, r.deal_id, r.from_stage_id, r.to_stage_id, r.changed_at))
    return out


def load_deal_touches(session: Session) -> dict[uuid.UUID, list[datetime]]:
    """Every activity time per deal (the gap model needs them all)."""
    out: dict[uuid.UUID, list[datetime]] = defaultdict(list)
    rows = session.execute(
        text("SELECT deal_id, occurred_at FROM activities WHERE deal_id IS NOT NULL ORDER BY deal_id, occurred_at")
    )
    for deal_id, occurred_at in rows:
        out[deal_id].append(occurred_at)
    return out


def load_snapshots(session: Session) -> dict[uuid.UUID, DealSnapshotState]:
    rows = session.execute(
        text(
            "SELECT deal_id, amount, expected_close_date, stage_id, captured_at, stage_history_id "
            "FROM anomaly_deal_snapshots"
        )
    )
    return {
        r.deal_id: DealSnapshotState(r.amount, r.expected_close_date, r.stage_id, r.captured_at, r.stage_history_id)
        for r in rows
    }


def save_snapshots(
    session: Session, deals: list[DealState], stage_changes: dict[uuid.UUID, list[StageChange]], now: datetime
) -> None:
    if not deals:
        return
    session.execute(
        text(
            """
            INSERT INTO anomaly_deal_snapshots
              (deal_id, amount, expected_close_date, stage_id, deal_version, stage_history_id, captured_at)
            VALUES (:deal_id, :amount, :close, :stage_id, :version, :history, :now)
            ON CONFLICT (organization_id, deal_id) DO UPDATE SET
              amount = EXCLUDED.amount, expected_close_date = EXCLUDED.expected_close_date,
              stage_id = EXCLUDED.stage_id, deal_version = EXCLUDED.deal_version,
              stage_history_id = EXCLUDED.stage_history_id, captured_at = EXCLUDED.captured_at
            """
        ),
        [
            {
                "deal_id": d.id,
                "amount": d.amount,
                "close": d.expected_close_date,
                "stage_id": d.stage_id,
                "version": d.version,
                "history": stage_changes[d.id][-1].id if stage_changes.get(d.id) else None,
                "now": now,
            }
            for d in deals
        ],
    )


def load_contact_email_gaps(session: Session) -> tuple[int, list[uuid.UUID]]:
    total = int(session.execute(text("SELECT count(*) FROM contacts")).scalar_one())
    missing = list(
        session.scalars(
            text("SELECT id FROM contacts WHERE email IS NULL OR btrim(email) = '' ORDER BY created_at DESC LIMIT 1000")
        )
    )
    return total, missing


FILL_RATE_FIELDS = {
    "contact.email": ("contacts", "email"),
    "contact.phone": ("contacts", "phone"),
    "contact.company_id": ("contacts", "company_id"),
    "contact.owner_id": ("contacts", "owner_id"),
    "deal.amount": ("deals", "amount"),
    "deal.expected_close_date": ("deals", "expected_close_date"),
    "company.industry": ("companies", "industry"),
    "company.domain": ("companies", "domain"),
}


def load_fill_rates(session: Session, now: datetime) -> list[FillRate]:
    rates = []
    recent_from, baseline_from = now - timedelta(days=7), now - timedelta(days=7 + 84)
    for field_name, (table, column) in FILL_RATE_FIELDS.items():
        row = session.execute(
            text(
                f"""
                SELECT count(*) FILTER (WHERE created_at >= :recent AND {column} IS NOT NULL) AS recent_filled,
                       count(*) FILTER (WHERE created_at >= :recent) AS recent_total,
                       count(*) FILTER (WHERE created_at < :recent AND {column} IS NOT NULL) AS baseline_filled,
                       count(*) FILTER (WHERE created_at < :recent) AS baseline_total
                FROM {table} WHERE created_at >= :baseline AND created_at < :now
                """
            ),
            {"recent": recent_from, "baseline": baseline_from, "now": now},
        ).one()
        rates.append(FillRate(field_name, *(int(v) for v in row)))
    return rates


def load_churn_scores(session: Session) -> list[ChurnScore]:
    rows = session.execute(
        text(
            """
            SELECT c.id,
                   coalesce(nullif(btrim(concat_ws(' ', c.first_name, c.last_name)), ''), c.email, c.id::text) AS name,
                   c.owner_id, cp.score, cp.scored_at,
                   (SELECT p.score FROM predictions p
                     WHERE p.entity_id = cp.entity_id AND p.target = 'churn_risk' AND p.id <> cp.prediction_id
                     ORDER BY p.created_at DESC LIMIT 1) AS previous_score,
                   (SELECT sum(d.amount) FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id
                     WHERE s.is_won
                       AND (d.contact_id = c.id OR (c.company_id IS NOT NULL AND d.company_id = c.company_id)))
                     AS customer_value
            FROM current_predictions cp JOIN contacts c ON c.id = cp.entity_id
            WHERE cp.target = 'churn_risk'
            """
        )
    )
    return [
        ChurnScore(
            contact_id=r.id,
            name=r.name,
            owner_id=r.owner_id,
            score=float(r.score),
            previous_score=None if r.previous_score is None else float(r.previous_score),
            scored_at=r.scored_at,
            customer_value=r.customer_value,
        )
        for r in rows
    ]


def _zero_filled(counts: dict[date, float], first: date, last: date) -> list[float]:
    days = (last - first).days + 1
    return [counts.get(first + timedelta(days=i), 0.0) for i in range(days)]


def load_series(session: Session, today: date) -> list[MetricSeries]:
    """Daily series up to yesterday (today is not over): per owner activities, and the
    organization's emails, new leads, won and lost deals, and open pipeline value."""
    last = today - timedelta(days=1)
    start = today - timedelta(days=SERIES_DAYS)
    params: dict[str, Any] = {"start": start, "today": today}
    out: list[MetricSeries] = []

    per_owner: dict[uuid.UUID, dict[date, float]] = defaultdict(dict)
    for owner_id, day, count in session.execute(
        text(
            """
            SELECT owner_id, (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*)
            FROM activities
            WHERE owner_id IS NOT NULL AND occurred_at >= :start AND occurred_at < :today
            GROUP BY owner_id, day
            """
        ),
        params,
    ):
        per_owner[owner_id][day] = float(count)
    names = {r.id: r.name for r in session.execute(text("SELECT id, name FROM users"))}
    for owner_id, counts in per_owner.items():
        first = min(counts)
        out.append(
            MetricSeries(
                "activities",
                f"Activities by {names.get(owner_id, 'an owner')}",
                first,
                _zero_filled(counts, first, last),
                owner_id=owner_id,
            )
        )

    simple = {
        "emails": (
            "Emails logged",
            "SELECT (occurred_at AT TIME ZONE 'UTC')::date, count(*) FROM activities "
            "WHERE type = 'email' AND occurred_at >= :start AND occurred_at < :today GROUP BY 1",
            True,
        ),
        "new_leads": (
            "New leads",
            "SELECT (created_at AT TIME ZONE 'UTC')::date, count(*) FROM contacts "
            "WHERE created_at >= :start AND created_at < :today GROUP BY 1",
            True,
        ),
        "deals_won": (
            "Deals won",
            "SELECT (d.closed_at AT TIME ZONE 'UTC')::date, count(*) FROM deals d "
            "JOIN pipeline_stages s ON s.id = d.stage_id WHERE s.is_won AND d.closed_at >= :start "
            "AND d.closed_at < :today GROUP BY 1",
            False,
        ),
        "deals_lost": (
            "Deals lost",
            "SELECT (d.closed_at AT TIME ZONE 'UTC')::date, count(*) FROM deals d "
            "JOIN pipeline_stages s ON s.id = d.stage_id WHERE s.is_lost AND d.closed_at >= :start "
            "AND d.closed_at < :today GROUP BY 1",
            False,
        ),
    }
    first_record = session.execute(
        text("SELECT least((SELECT min(created_at) FROM contacts), (SELECT min(occurred_at) FROM activities))")
    ).scalar()
    if first_record is None:
        return out
    first = max(start, first_record.date())
    for metric, (label, sql, engagement) in simple.items():
        counts = {day: float(count) for day, count in session.execute(text(sql), params)}
        out.append(MetricSeries(metric, label, first, _zero_filled(counts, first, last), engagement=engagement))

    # open pipeline value at the end of each day, from today's amounts (amount history is not kept)
    values = session.execute(
        text(
            """
            SELECT g.day::date, coalesce(sum(d.amount), 0)
            FROM generate_series(CAST(:first AS date), CAST(:last AS date), interval '1 day') AS g(day)
            LEFT JOIN deals d ON d.created_at < g.day + interval '1 day'
                 AND (d.closed_at IS NULL OR d.closed_at >= g.day + interval '1 day')
            GROUP BY g.day ORDER BY g.day
            """
        ),
        {"first": first, "last": last},
    ).all()
    if values:
        out.append(
            MetricSeries(
                "pipeline_value",
                "Open pipeline value",
                first,
                [float(v) for _, v in values],
                counts=False,
                engagement=False,
            )
        )
    return out
