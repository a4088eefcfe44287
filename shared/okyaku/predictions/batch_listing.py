"""The batch listing of current scores (leads or customers), sorted and paged by cursor."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from okyaku.crm.listing import decode_cursor, encode_cursor, invalid_cursor
from okyaku.errors import ValidationFailed, field_error
from okyaku.predictions.populations import POPULATION_SQL
from okyaku.predictions.targets import PREDICTION_OF, ModelTarget
from okyaku.predictions.trained_models import LoadedModel

BATCH_SORTS = ("-score", "score", "-scored_at", "scored_at")


def batch_page(
    session: Session,
    target: ModelTarget,
    loaded: LoadedModel,
    limit: int,
    cursor: str | None,
    sort: str,
    min_score: float | None,
    *,
    freshly_scored: int,
) -> dict[str, Any]:
    column = "cp.score" if sort.endswith("score") else "cp.scored_at"
    descending = sort.startswith("-")
    conditions = ["cp.target = :target", POPULATION_SQL[target]]
    params: dict[str, Any] = {"target": PREDICTION_OF[target], "limit": limit + 1}
    if min_score is not None:
        conditions.append("cp.score >= :min_score")
        params["min_score"] = min_score
    if cursor:
        cursor_sort, value, last_id = decode_cursor(cursor)
        if cursor_sort != sort:
            raise ValidationFailed(
                "the cursor belongs to another sort order",
                details=[field_error("cursor", f"this cursor was made for sort={cursor_sort}")],
            )
        cast = "float8" if column == "cp.score" else "timestamptz"
        try:  # the cursor is client input: its value must read as the sort column's type
            typed: float | datetime = float(value or "") if cast == "float8" else datetime.fromisoformat(value or "")
        except ValueError as error:
            raise invalid_cursor() from error
        conditions.append(f"({column}, cp.entity_id) {'<' if descending else '>'} (CAST(:value AS {cast}), :last_id)")
        params.update({"value": typed, "last_id": last_id})
    direction = "DESC" if descending else "ASC"
    rows = session.execute(
        text(
            f"""
            SELECT cp.entity_id, cp.score, cp.scored_at, cp.model_version, p.method, p.payload,
                   c.first_name, c.last_name, c.email, c.lifecycle_stage
              FROM current_predictions cp
              JOIN contacts c ON c.id = cp.entity_id
              JOIN predictions p ON p.id = cp.prediction_id
             WHERE {" AND ".join(conditions)}
             ORDER BY {column} {direction}, cp.entity_id {direction}
             LIMIT :limit
            """
        ),
        params,
    ).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor(
            sort, last.score if column == "cp.score" else last.scored_at.isoformat(), last.entity_id
        )
    data = []
    for r in rows:
        payload = r.payload or {}
        item = {
            "contact_id": str(r.entity_id),
            "name": " ".join(p for p in (r.first_name, r.last_name) if p) or None,
            "email": r.email,
            "lifecycle_stage": r.lifecycle_stage,
            "score": r.score,
            "method": r.method,
            "model_version": r.model_version,
            "scored_at": r.scored_at.isoformat(),
            "sub_scores": payload.get("sub_scores", {}),
            "top_factors": payload.get("factors", [])[:3],
        }
        if target == "churn":
            item["level"] = payload.get("level")
        data.append(item)
    return {
        "target": PREDICTION_OF[target],
        "method": loaded.method,
        "model_version": loaded.version,
        "degraded": loaded.degraded,
        "freshly_scored": freshly_scored,
        "data": data,
        "next_cursor": next_cursor,
    }
