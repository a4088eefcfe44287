"""Known CRM data for the chat tests, built through the CRUD API (lead scores through the ORM),
and a chat client factory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient

from okyaku.chat.api import create_chat_app
from okyaku.chat.service import ChatService
from okyaku.predictions.models import CurrentPrediction


class FixedClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _post(client: TestClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def build_crm(tenant: Any, pipeline: dict[str, Any], runtime: Any, now: datetime) -> dict[str, Any]:
    """Three companies, four contacts, six deals, four activities, three lead scores."""
    c = tenant.client
    stages = {s["name"]: s["id"] for s in pipeline["stages"]}
    today = now.date()
    month_start = today.replace(day=1)
    next_month = (month_start + timedelta(days=32)).replace(day=1)
    acme = _post(c, "/api/v1/companies", {"name": "Acme Corp", "country": "Germany", "industry": "Software"})
    globex = _post(c, "/api/v1/companies", {"name": "Globex", "country": "United States", "industry": "Manufacturing"})
    initech = _post(c, "/api/v1/companies", {"name": "Initech", "country": "France", "industry": "Software"})
    sarah = _post(
        c,
        "/api/v1/contacts",
        {"first_name": "Sarah", "last_name": "Lee", "email": "sarah@acme.example", "company_id": acme["id"]},
    )
    john = _post(
        c,
        "/api/v1/contacts",
        {"first_name": "John", "last_name": "Smith", "email": "john@globex.example", "company_id": globex["id"]},
    )
    mary = _post(
        c,
        "/api/v1/contacts",
        {
            "first_name": "Mary",
            "last_name": "Major",
            "email": "mary@initech.example",
            "company_id": initech["id"],
            "lifecycle_stage": "customer",
        },
    )
    jdoe = _post(
        c,
        "/api/v1/contacts",
        {"first_name": "John", "last_name": "Doe", "email": "jdoe@acme.example", "company_id": acme["id"]},
    )

    def deal(name: str, amount: int, stage: str, company: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body = {
            "name": name,
            "amount": str(amount),
            "pipeline_id": pipeline["id"],
            "stage_id": stages[stage],
            "company_id": company["id"],
            **extra,
        }
        return _post(c, "/api/v1/deals", body)

    deals = {
        "acme_expansion": deal(
            "Acme expansion", 12000, "Proposal", acme, expected_close_date=month_start.replace(day=28).isoformat()
        ),
        "globex_renewal": deal(
            "Globex renewal", 30000, "Negotiation", globex, expected_close_date=month_start.isoformat()
        ),
        "initech_pilot": deal(
            "Initech pilot",
            5000,
            "Qualification",
            initech,
            expected_close_date=(next_month + timedelta(days=9)).isoformat(),
        ),
        "acme_won": deal("Acme platform", 20000, "Closed Won", acme, closed_at=now.isoformat()),
        "globex_lost": deal(
            "Globex tooling",
            7000,
            "Closed Lost",
            globex,
            closed_at=now.isoformat(),
            lost_reason="Went with a competitor on price",
        ),
        "initech_old": deal(
            "Initech legacy", 9000, "Closed Won", initech, closed_at=(now - timedelta(days=400)).isoformat()
        ),
    }
    activities = [
        _post(
            c,
            "/api/v1/activities",
            {
                "type": "call",
                "subject": "Pricing call",
                "contact_id": sarah["id"],
                "occurred_at": (now - timedelta(days=2)).isoformat(),
            },
        ),
        _post(
            c,
            "/api/v1/activities",
            {
                "type": "meeting",
                "subject": "Quarterly review",
                "company_id": acme["id"],
                "occurred_at": (now - timedelta(days=5)).isoformat(),
            },
        ),
        _post(
            c,
            "/api/v1/activities",
            {
                "type": "email",
                "subject": "Renewal terms",
                "contact_id": john["id"],
                "occurred_at": (now - timedelta(days=60)).isoformat(),
            },
        ),
        _post(
            c,
            "/api/v1/activities",
            {
                "type": "note",
                "subject": "Globex note",
                "company_id": globex["id"],
                "occurred_at": (now - timedelta(days=61)).isoformat(),
            },
        ),
    ]
    with runtime.db.organization_scope(tenant.id) as session:
        for contact, score in ((sarah, 87.5), (john, 42.0), (mary, 65.0)):
            session.add(
                CurrentPrediction(
                    target="lead_score",
                    entity_id=contact["id"],
                    prediction_id=contact["id"],
                    score=score,
                    input_hash="x" * 64,
                    scored_at=now,
                )
            )
    return {
        "companies": {"acme": acme, "globex": globex, "initech": initech},
        "contacts": {"sarah": sarah, "john": john, "mary": mary, "jdoe": jdoe},
        "deals": deals,
        "activities": activities,
        "stages": stages,
        "today": today,
    }


def chat_client(runtime: Any, llm: Any, api_key: str, clock: FixedClock) -> TestClient:
    service = ChatService(runtime, llm, clock=clock)
    return TestClient(create_chat_app(service), headers={"Authorization": f"Bearer {api_key}"})


def ask(client: TestClient, message: str, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/ai/chat", json={"message": message, **body})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def column(result: dict[str, Any], name: str) -> list[Any]:
    index = result["data"]["columns"].index(name)
    return [row[index] for row in result["data"]["rows"]]
