"""Building scenarios for the recommendation tests: records through the CRUD API, scores through
the predictions store, and a clock the service reads (days pass by moving it forward)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from okyaku.db import Database
from okyaku.predictions.store import PredictionRecord, store_predictions
from okyaku.recommendations.api import create_recommendations_app
from okyaku.recommendations.explain import CardWriter
from okyaku.recommendations.service import RecommendationService
from okyaku.runtime import Runtime

STAGES = [
    {"name": "Qualification", "probability": 0.1},
    {"name": "Proposal", "probability": 0.4},
    {"name": "Negotiation", "probability": 0.7},
    {"name": "Closed Won", "probability": 1.0, "is_won": True},
    {"name": "Closed Lost", "probability": 0.0, "is_lost": True},
]


@dataclass
class Clock:
    """The real time plus an offset: records made now are in its past; ``advance`` lets days pass."""

    offset: timedelta = field(default_factory=timedelta)

    @property
    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.offset += timedelta(days=days)


@dataclass
class Scenario:
    """One organization: its CRM client (the CRUD API), its recommendations client, its user."""

    crm: TestClient
    runtime: Runtime
    organization_id: uuid.UUID
    user_id: uuid.UUID
    api_key: str
    clock: Clock
    owner_db: Database
    writer: CardWriter | None = None
    stages: dict[str, str] = field(default_factory=dict)
    pipeline_id: str = ""
    _service: RecommendationService | None = None
    _client: TestClient | None = None

    @property
    def service(self) -> RecommendationService:
        if self._service is None:
            self._service = RecommendationService(self.runtime, writer=self.writer, clock=self.clock)
        return self._service

    @property
    def api(self) -> TestClient:
        if self._client is None:
            app = create_recommendations_app(self.service)
            self._client = TestClient(app, headers={"Authorization": f"Bearer {self.api_key}"})
        return self._client

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.crm.post(f"/api/v1/{path}", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def pipeline(self) -> None:
        created = self.post("pipelines", {"name": "Sales", "stages": STAGES})
        self.pipeline_id = created["id"]
        self.stages = {s["name"]: s["id"] for s in created["stages"]}

    def deal(self, name: str, stage: str = "Qualification", **fields: Any) -> dict[str, Any]:
        if not self.pipeline_id:
            self.pipeline()
        body = {"name": name, "pipeline_id": self.pipeline_id, "stage_id": self.stages[stage], **fields}
        return self.post("deals", body)

    def contact(self, first: str, **fields: Any) -> dict[str, Any]:
        return self.post("contacts", {"first_name": first, "last_name": "Tester", **fields})

    def activity(self, days_ago: float, **fields: Any) -> dict[str, Any]:
        when = self.clock.now - timedelta(days=days_ago)
        return self.post("activities", {"type": "call", "occurred_at": when.isoformat(), **fields})

    def task(self, due_in_days: float, **fields: Any) -> dict[str, Any]:
        due = self.clock.now + timedelta(days=due_in_days)
        return self.post("tasks", {"title": "Check in", "due_date": due.isoformat(), **fields})

    def score(self, contact_id: str, target: str, score: float, *, days_ago: float = 0, method: str = "model") -> None:
        """A stored prediction, as the scoring function leaves it (backdated when asked)."""
        prediction_id = uuid.uuid4()
        record = PredictionRecord(
            prediction_id=prediction_id,
            entity_type="contact",
            entity_id=uuid.UUID(contact_id),
            target=target,
            score=score,
            method=method,
            model_version=1,
            payload={"score": score},
            input_hash=uuid.uuid4().hex,
        )
        with self.runtime.db.organization_scope(self.organization_id) as session:
            store_predictions(session, [record], scored_at=self.clock.now)
        if days_ago:
            self.backdate("predictions", prediction_id, "created_at", days_ago)

    def backdate(self, table: str, row_id: Any, column: str, days_ago: float) -> None:
        """Moves a server-set timestamp into the past (what no API lets a client set)."""
        with self.owner_db.session() as session:
            session.execute(
                text(f"UPDATE {table} SET {column} = :at WHERE id = :id"),
                {"at": self.clock.now - timedelta(days=days_ago), "id": row_id},
            )

    def backdate_history(self, deal_id: str, to_stage: str, days_ago: float) -> None:
        with self.owner_db.session() as session:
            session.execute(
                text("UPDATE deal_stage_history SET changed_at = :at WHERE deal_id = :deal AND to_stage_id = :stage"),
                {"at": self.clock.now - timedelta(days=days_ago), "deal": deal_id, "stage": self.stages[to_stage]},
            )

    def cards(self, entity_type: str, entity_id: str) -> list[dict[str, Any]]:
        response = self.api.get(f"/api/v1/ai/recommendations/{entity_type}/{entity_id}")
        assert response.status_code == 200, response.text
        return response.json()["data"]  # type: ignore[no-any-return]

    def rules(self, entity_type: str, entity_id: str) -> set[str]:
        return {c["rule"] for c in self.cards(entity_type, entity_id) if c["entity_id"] == entity_id}

    def card(self, entity_type: str, entity_id: str, rule: str) -> dict[str, Any]:
        (found,) = [c for c in self.cards(entity_type, entity_id) if c["rule"] == rule]
        return found

    def feedback(self, card_id: str, kind: str, **extra: Any) -> Any:
        response = self.api.post(f"/api/v1/ai/recommendations/{card_id}/feedback", json={"feedback": kind, **extra})
        assert response.status_code == 200, response.text
        return response.json()
