"""Labelled examples (each with the cutoff its features are computed at) and the scoring
populations: who converted or not, who churned, which deals were won or lost.

A cutoff falls before the outcome, at a deterministic point within the record's known span
(hash of the id), so that training sees records at every age, as scoring does."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

Target = Literal["lead", "churn", "deal"]
LEAD_HORIZON = timedelta(days=180)  # an open lead older than this without converting counts as not converted
CONVERTED_STAGES = ("customer", "evangelist")
NEGATIVE_LEAD_STATUSES = ("unqualified", "bad_timing")


def cutoff_fraction(entity_id: uuid.UUID) -> float:
    """A stable pseudo-random point in [0, 1) for this record."""
    digest = hashlib.sha256(entity_id.bytes).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _between(start: datetime, end: datetime, fraction: float) -> datetime:
    if end <= start:
        return end
    return start + (end - start) * fraction


@dataclass(frozen=True)
class LabelledExample:
    entity_id: uuid.UUID
    label: int
    cutoff: datetime
    closed_at: datetime | None = None
    amount: float | None = None


OPEN_LEAD_SQL = (
    "c.lifecycle_stage NOT IN ('customer', 'evangelist', 'churned') "
    "AND coalesce(c.lead_status, '') NOT IN ('unqualified', 'bad_timing')"
)
CUSTOMER_SQL = "c.lifecycle_stage IN ('customer', 'evangelist')"


def lead_examples(session: Session, now: datetime) -> list[LabelledExample]:
    """Converted (customer, evangelist, or a won deal) vs not (disqualified, or open too long)."""
    rows = session.execute(
        text(
            """
            SELECT c.id, c.created_at, c.updated_at, c.lifecycle_stage, c.lead_status,
                   (SELECT min(coalesce(d.closed_at, d.updated_at)) FROM deals d
                      JOIN pipeline_stages s ON s.id = d.stage_id
                     WHERE d.contact_id = c.id AND s.is_won) AS won_at
              FROM contacts c
            """
        )
    ).all()
    examples = []
    for row in rows:
        if row.won_at is not None or row.lifecycle_stage in CONVERTED_STAGES:
            outcome_at, label = row.won_at or row.updated_at, 1
        elif row.lifecycle_stage == "churned":
            continue  # converted at some unknown time before churning
        elif row.lead_status in NEGATIVE_LEAD_STATUSES:
            outcome_at, label = row.updated_at, 0
        elif row.created_at < now - LEAD_HORIZON:
            outcome_at, label = row.created_at + LEAD_HORIZON, 0
        else:
            continue  # still open: scored, not learnt from
        cutoff = _between(row.created_at, outcome_at, cutoff_fraction(row.id))
        examples.append(LabelledExample(row.id, label, cutoff))
    return examples


def churn_examples(session: Session, now: datetime) -> list[LabelledExample]:
    """Churned customers as of when they churned vs current customers as of now."""
    rows = session.execute(
        text(
            "SELECT id, updated_at, lifecycle_stage FROM contacts "
            "WHERE lifecycle_stage IN ('customer', 'evangelist', 'churned')"
        )
    ).all()
    return [
        LabelledExample(r.id, 1, r.updated_at) if r.lifecycle_stage == "churned" else LabelledExample(r.id, 0, now)
        for r in rows
    ]


def deal_examples(session: Session) -> list[LabelledExample]:
    """Won vs lost deals, each observed at a point of its open life."""
    rows = session.execute(
        text(
            """
            SELECT d.id, d.created_at, coalesce(d.closed_at, d.updated_at) AS closed_at, d.amount, s.is_won
              FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id
             WHERE s.is_won OR s.is_lost
            """
        )
    ).all()
    return [
        LabelledExample(
            r.id,
            1 if r.is_won else 0,
            _between(r.created_at, r.closed_at, cutoff_fraction(r.id)),
            closed_at=r.closed_at,
            amount=None if r.amount is None else float(r.amount),
        )
        for r in rows
    ]


def scoring_population(session: Session, target: Target) -> list[uuid.UUID]:
    """Who gets this score: open leads (not disqualified), current customers, open deals."""
    if target == "lead":
        sql = f"SELECT c.id FROM contacts c WHERE {OPEN_LEAD_SQL} ORDER BY c.id"
    elif target == "churn":
        sql = f"SELECT c.id FROM contacts c WHERE {CUSTOMER_SQL} ORDER BY c.id"
    else:
        sql = (
            "SELECT d.id FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id "
            "WHERE NOT s.is_won AND NOT s.is_lost ORDER BY d.id"
        )
    return list(session.scalars(text(sql)))
