"""Writing findings: one open anomaly per (type, entity), updated rather than re-created; the
state-like detectors' anomalies resolve themselves when the condition is gone; every new
anomaly gets a notification per recipient (its owner, else the organization's admins)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import literal_column, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from okyaku.anomalies.detectors import Finding
from okyaku.anomalies.models import Anomaly, Notification

# Types whose finding describes a state that holds or not each scan: gone = resolved.
STATE_TYPES = ("stale_deal", "data_gap", "churn_risk")


@dataclass
class UpsertResult:
    created: list[uuid.UUID]
    updated: list[uuid.UUID]
    suppressed: int  # dismissed recently: not raised again


def upsert_findings(
    session: Session, findings: Sequence[Finding], now: datetime, dismiss_snooze_days: float
) -> UpsertResult:
    """One multi-row ``INSERT ... ON CONFLICT`` per 500 findings (each (type, entity) at most once)."""
    result = UpsertResult([], [], 0)
    snoozed = _recently_dismissed(session, now - timedelta(days=dismiss_snooze_days))
    rows = []
    for finding in findings:
        if (finding.type, finding.entity_key) in snoozed:
            result.suppressed += 1
            continue
        rows.append(
            {
                "type": finding.type,
                "entity_type": finding.entity_type,
                "entity_id": finding.entity_id,
                "entity_key": finding.entity_key,
                "title": finding.title[:300],
                "description": finding.description,
                "severity": finding.severity,
                "deviation": finding.deviation,
                "money_at_stake": finding.money_at_stake,
                "evidence": finding.evidence,
                "owner_id": finding.owner_id,
                "first_detected_at": now,
                "last_detected_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
    for start in range(0, len(rows), 500):
        values = insert(Anomaly).values(rows[start : start + 500])
        excluded = values.excluded
        statement: Any = values.on_conflict_do_update(
            index_elements=["organization_id", "type", "entity_key"],
            index_where=text("status IN ('open', 'acknowledged')"),
            set_={
                "title": excluded.title,
                "description": excluded.description,
                "severity": excluded.severity,
                "deviation": excluded.deviation,
                "money_at_stake": excluded.money_at_stake,
                # deal changes accumulate: each scan's changes are added to the open anomaly's list
                "evidence": text(
                    "CASE WHEN excluded.type = 'deal_change' THEN anomalies.evidence || excluded.evidence || "
                    "jsonb_build_object('changes', coalesce(anomalies.evidence->'changes', '[]'::jsonb) || "
                    "coalesce(excluded.evidence->'changes', '[]'::jsonb)) ELSE excluded.evidence END"
                ),
                "owner_id": excluded.owner_id,
                "last_detected_at": excluded.last_detected_at,
                "updated_at": excluded.updated_at,
                "detection_count": Anomaly.detection_count + 1,
            },
        ).returning(Anomaly.id, literal_column("(xmax = 0)").label("inserted"))
        for row in session.execute(statement):
            (result.created if row.inserted else result.updated).append(row.id)
    return result


def _recently_dismissed(session: Session, since: datetime) -> set[tuple[str, str]]:
    rows = session.execute(
        text("SELECT type, entity_key FROM anomalies WHERE status = 'dismissed' AND status_changed_at >= :since"),
        {"since": since},
    )
    return {(r.type, r.entity_key) for r in rows}


def resolve_cleared(
    session: Session, types: Iterable[str], still_found: Iterable[tuple[str, str]], now: datetime
) -> int:
    """Resolve the open anomalies of ``types`` that this scan did not find again."""
    kept = {f"{t}\x1f{k}" for t, k in still_found}
    rows = session.execute(
        text(
            "SELECT id, type, entity_key FROM anomalies WHERE status IN ('open', 'acknowledged') AND type = ANY(:types)"
        ),
        {"types": list(types)},
    ).all()
    gone = [r.id for r in rows if f"{r.type}\x1f{r.entity_key}" not in kept]
    if gone:
        session.execute(
            text(
                "UPDATE anomalies SET status = 'resolved', status_changed_at = :now, updated_at = :now, "
                "status_note = 'resolved by the scan: the condition no longer holds' WHERE id = ANY(:ids)"
            ),
            {"now": now, "ids": gone},
        )
    return len(gone)


def notify_new(session: Session, anomaly_ids: Sequence[uuid.UUID], now: datetime) -> int:
    """One notification per recipient of each new anomaly: critical ones are e-mailed at once,
    the rest wait for the weekly summary. Idempotent (one per user and anomaly)."""
    if not anomaly_ids:
        return 0
    admins = list(session.scalars(text("SELECT id FROM users WHERE role = 'admin' ORDER BY created_at")))
    users = set(session.scalars(text("SELECT id FROM users")))
    anomalies = session.execute(
        text("SELECT id, owner_id, severity, title, description FROM anomalies WHERE id = ANY(:ids)"),
        {"ids": list(anomaly_ids)},
    ).all()
    rows = []
    for anomaly in anomalies:
        recipients = [anomaly.owner_id] if anomaly.owner_id in users else admins
        for user_id in recipients:
            rows.append(
                {
                    "user_id": user_id,
                    "kind": "anomaly",
                    "anomaly_id": anomaly.id,
                    "severity": anomaly.severity,
                    "title": anomaly.title,
                    "body": anomaly.description,
                    "email_status": "pending" if anomaly.severity == "critical" else "digest",
                    "email_next_attempt_at": now,
                    "created_at": now,
                }
            )
    if not rows:
        return 0
    inserted = session.execute(
        insert(Notification).values(rows).on_conflict_do_nothing().returning(Notification.id)
    ).all()
    return len(inserted)
