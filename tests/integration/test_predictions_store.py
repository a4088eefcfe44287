"""Storing scores: the COPY path (large batches) stores exactly what the statement path stores,
and stays inside the organization's row-level security."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from sqlalchemy import select, text

from okyaku.predictions import store
from okyaku.predictions.models import CurrentPrediction, Prediction
from okyaku.predictions.store import PredictionRecord, store_by_copy, store_by_statements, store_predictions
from okyaku.tenancy import create_organization

SCORED_AT = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


def records(entity_ids: list[uuid.UUID], version: int = 1) -> list[PredictionRecord]:
    """Payloads with what COPY's text format must escape (backslashes, tabs, newlines, quotes)."""
    out = []
    for n, entity_id in enumerate(entity_ids):
        prediction_id = uuid.uuid4()
        payload: dict[str, Any] = {
            "prediction_id": str(prediction_id),
            "score": 12.5 + n,
            "factors": [
                {"feature": "source", "value": 'tab\there, "quoted", back\\slash\nnew line', "impact": -3.25},
                {"feature": "company_country", "value": "Österreich ✓", "impact": 0.1 + n / 3, "log_odds": None},
            ],
            "sub_scores": {"fit": {"score": 40.0, "impact": 1.25}},
            "explanation": None,
            "scored_at": SCORED_AT,  # not JSON: both paths fall back to str()
        }
        out.append(
            PredictionRecord(
                prediction_id=prediction_id,
                entity_type="contact",
                entity_id=entity_id,
                target="lead_score",
                score=12.5 + n,
                method="model" if n % 2 else "prior",
                model_version=None if n == 3 else version,
                payload=payload,
                input_hash=f"{n:064x}",
            )
        )
    return out


def stored(session: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    history = session.execute(
        select(
            Prediction.organization_id,
            Prediction.entity_type,
            Prediction.entity_id,
            Prediction.target,
            Prediction.score,
            Prediction.method,
            Prediction.model_version,
            Prediction.payload,
        ).order_by(Prediction.entity_id, Prediction.created_at)
    ).all()
    current = session.execute(
        select(
            CurrentPrediction.organization_id,
            CurrentPrediction.target,
            CurrentPrediction.entity_id,
            CurrentPrediction.prediction_id,
            CurrentPrediction.score,
            CurrentPrediction.input_hash,
            CurrentPrediction.model_version,
            CurrentPrediction.last_event_id,
            CurrentPrediction.scored_at,
        ).order_by(CurrentPrediction.entity_id)
    ).all()
    return [tuple(r) for r in history], [tuple(r) for r in current]


def without_ids(rows: list[tuple[Any, ...]], ids: dict[uuid.UUID, int]) -> list[tuple[Any, ...]]:
    """Rows with prediction ids (unique across organizations) replaced by their batch position."""
    out = []
    for row in rows:
        values = [ids.get(v, v) if isinstance(v, uuid.UUID) else v for v in row]
        values = [
            {**v, "prediction_id": ids[uuid.UUID(v["prediction_id"])]} if isinstance(v, dict) else v for v in values
        ]
        out.append(tuple(values))
    return out


def test_copy_stores_exactly_what_the_statements_store(db):
    first = create_organization(db, "Statements", "s@example.com").organization_id
    second = create_organization(db, "Copy", "c@example.com").organization_id
    entity_ids = sorted(uuid.uuid4() for _ in range(6))
    event_id = uuid.uuid4()
    by_statements_batch, by_copy_batch = records(entity_ids), records(entity_ids)
    with db.organization_scope(first) as session:
        store_by_statements(session, by_statements_batch, scored_at=SCORED_AT, event_id=event_id)
    with db.organization_scope(second) as session:
        store_by_copy(session, iter(by_copy_batch), scored_at=SCORED_AT, event_id=event_id)
    with db.organization_scope(first) as session:
        history, current = stored(session)
        by_statements = without_ids(history, {r.prediction_id: n for n, r in enumerate(by_statements_batch)}), current
    with db.organization_scope(second) as session:
        history, current = stored(session)
        by_copy = without_ids(history, {r.prediction_id: n for n, r in enumerate(by_copy_batch)}), current
    assert len(by_copy[0]) == len(by_copy[1]) == 6
    # Identical but for the organization each was stored in and the new prediction ids.
    assert [(first, *r[1:]) for r in by_copy[0]] == [(first, *r[1:]) for r in by_statements[0]]
    by_copy_current = without_ids(
        by_copy[1], {second: first, **{r.prediction_id: n for n, r in enumerate(by_copy_batch)}}
    )
    assert by_copy_current == without_ids(
        by_statements[1], {r.prediction_id: n for n, r in enumerate(by_statements_batch)}
    )
    assert {r[0] for r in by_copy[0]} == {second}
    assert by_copy[0][0][7]["factors"][0]["value"] == 'tab\there, "quoted", back\\slash\nnew line'
    assert by_copy[0][0][7]["scored_at"] == str(SCORED_AT)


def test_copy_keeps_history_and_replaces_the_current_score(db):
    organization = create_organization(db, "Twice", "t@example.com").organization_id
    entity_ids = [uuid.uuid4() for _ in range(3)]
    first, second = records(entity_ids, version=1), records(entity_ids, version=2)
    with db.organization_scope(organization) as session:
        # Two batches in one transaction: the staging table is made afresh for each.
        store_by_copy(session, first, scored_at=SCORED_AT)
        store_by_copy(session, second, scored_at=SCORED_AT)
    with db.organization_scope(organization) as session:
        history, current = stored(session)
    assert len(history) == 6
    assert {r[2]: r[3] for r in current} == {r.entity_id: r.prediction_id for r in second}
    assert {r[6] for r in current} == {2}


def test_large_batches_take_the_copy_path(db, monkeypatch):
    organization = create_organization(db, "Dispatch", "d@example.com").organization_id
    used: list[str] = []
    monkeypatch.setattr(store, "store_by_copy", lambda *a, **k: used.append("copy"))
    monkeypatch.setattr(store, "store_by_statements", lambda *a, **k: used.append("statements"))
    few = records([uuid.uuid4() for _ in range(2)])
    with db.organization_scope(organization) as session:
        store_predictions(session, few, scored_at=SCORED_AT)
        store_predictions(session, iter(few), scored_at=SCORED_AT, count=store.COPY_THRESHOLD)
        store_predictions(session, iter(few), scored_at=SCORED_AT)  # no count: counted
        store_predictions(session, [], scored_at=SCORED_AT)
    assert used == ["statements", "copy", "statements"]


def test_copied_rows_stay_under_row_level_security(db):
    mine = create_organization(db, "Mine", "m@example.com").organization_id
    theirs = create_organization(db, "Theirs", "t@example.com").organization_id
    batch = records([uuid.uuid4() for _ in range(2)])
    with db.organization_scope(mine) as session:
        store_by_copy(session, batch, scored_at=SCORED_AT)
    with db.organization_scope(theirs) as session:
        assert stored(session) == ([], [])
    with db.organization_scope(mine) as session:
        history, current = stored(session)
        assert {r[0] for r in history} == {r[0] for r in current} == {mine}

    # Postgres refuses COPY straight into a table under RLS (hence the staging table) ...
    with pytest.raises(psycopg.errors.FeatureNotSupported), db.organization_scope(mine) as session:
        cursor = session.connection().connection.driver_connection.cursor()
        with cursor.copy(
            "COPY predictions (id, entity_type, entity_id, target, score, method, payload) FROM STDIN"
        ) as c:
            c.write_row((uuid.uuid4(), "contact", uuid.uuid4(), "lead_score", 1.0, "model", "{}"))
    # ... and a staged row cannot be moved into another organization.
    with pytest.raises(Exception, match="row-level security"), db.organization_scope(mine) as session:
        session.execute(store._CREATE_STAGE)
        cursor = session.connection().connection.driver_connection.cursor()
        with cursor.copy(store._COPY_STAGE) as c:
            r = batch[0]
            c.write_row((uuid.uuid4(), "contact", r.entity_id, r.target, 1.0, "model", 1, "{}", r.input_hash))
        session.execute(
            text(
                "INSERT INTO predictions (organization_id, id, entity_type, entity_id, target, score, method, payload) "
                "SELECT :other, id, entity_type, entity_id, target, score, method, payload FROM prediction_stage"
            ),
            {"other": theirs},
        )
    with db.organization_scope(theirs) as session:
        assert stored(session) == ([], [])
