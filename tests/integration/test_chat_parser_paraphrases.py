"""The paraphrase set: every question family in several phrasings, on two differently shaped
organizations — the chat tests' CRM (chat_support.build_crm) and one built here with other stage
names, two pipelines, three owners, deals in euros and pounds, tasks and activities — with the LLM
down. Expected answers come from the records read plainly (okyaku.chat.evaluation: ORM reads and
Python, no chat code), and a few are stated here by hand from the data this test writes. The bar:
nothing wrong, at least 90 % right."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from okyaku.chat.evaluation import Report, generate_cases, read_facts, run_cases
from okyaku.db.models import User
from tests.integration.chat_support import FixedClock, ask, build_crm, chat_client


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


def _post(client: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def build_second_crm(tenant: Any, runtime: Any, now: Any) -> dict[str, Any]:
    """Two pipelines with their own stage names, three owners, euros and pounds."""
    c = tenant.client
    with runtime.db.organization_scope(tenant.id) as session:
        kenji = User(email="kenji@second.example", name="Kenji Watanabe")
        lucia = User(email="lucia@second.example", name="Lucia Ferreira")
        session.add_all([kenji, lucia])
        session.flush()
        owners = {"kenji": str(kenji.id), "lucia": str(lucia.id), "me": str(tenant.org.user_id)}
    enterprise = _post(
        c,
        "/api/v1/pipelines",
        {
            "name": "Enterprise",
            "stages": [
                {"name": "Discovery Call", "probability": 0.1},
                {"name": "Demo Booked", "probability": 0.3},
                {"name": "Contract Sent", "probability": 0.7},
                {"name": "Signed", "probability": 1.0, "is_won": True},
                {"name": "Dropped", "probability": 0.0, "is_lost": True},
            ],
        },
    )
    partner = _post(
        c,
        "/api/v1/pipelines",
        {
            "name": "Partner Channel",
            "stages": [
                {"name": "Intake", "probability": 0.1},
                {"name": "Trial", "probability": 0.4},
                {"name": "Quote", "probability": 0.6},
                {"name": "Paid", "probability": 1.0, "is_won": True},
                {"name": "Gone", "probability": 0.0, "is_lost": True},
            ],
        },
    )
    stages = {s["name"]: (p["id"], s["id"]) for p in (enterprise, partner) for s in p["stages"]}
    companies = {
        key: _post(c, "/api/v1/companies", {"name": name, "country": country, "industry": industry})
        for key, name, country, industry in (
            ("kaito", "Kaito Robotics", "Japan", "Robotics"),
            ("vale", "Vale Agro", "Brazil", "Agriculture"),
            ("northwind", "Northwind Traders", "Canada", "Retail"),
            ("umbra", "Umbra Labs", "Japan", "Software"),
            ("sakura", "Sakura Foods", "Japan", "Food"),
        )
    }
    contacts = {
        key: _post(
            c,
            "/api/v1/contacts",
            {"first_name": first, "last_name": last, "company_id": companies[company]["id"], "lifecycle_stage": stage},
        )
        for key, first, last, company, stage in (
            ("aiko_t", "Aiko", "Tanaka", "kaito", "lead"),
            ("aiko_s", "Aiko", "Sato", "umbra", "lead"),
            ("bruno", "Bruno", "Silva", "vale", "mql"),
            ("chloe", "Chloe", "Martin", "northwind", "customer"),
            ("daniel", "Daniel", "Okafor", "northwind", "lead"),
            ("emi", "Emi", "Kato", "kaito", "sql"),
        )
    }
    today = now.date()
    month_end = (today.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    next_month = month_end + timedelta(days=5)

    def deal(name: str, amount: int | None, currency: str, stage: str, owner: str, company: str, **extra: Any) -> Any:
        pipeline_id, stage_id = stages[stage]
        body = {
            "name": name,
            "currency": currency,
            "pipeline_id": pipeline_id,
            "stage_id": stage_id,
            "owner_id": owners[owner],
            "company_id": companies[company]["id"],
            **({"amount": str(amount)} if amount is not None else {}),
            **extra,
        }
        return _post(c, "/api/v1/deals", body)

    deals = [
        deal(
            "Kaito arm controllers",
            120000,
            "EUR",
            "Contract Sent",
            "kenji",
            "kaito",
            expected_close_date=str(month_end),
        ),
        deal("Vale irrigation", 45000, "EUR", "Demo Booked", "lucia", "vale", expected_close_date=str(next_month)),
        deal("Northwind POS", 80000, "GBP", "Contract Sent", "lucia", "northwind", expected_close_date=str(month_end)),
        deal("Umbra pilot", None, "GBP", "Discovery Call", "kenji", "umbra"),
        deal("Sakura partner", 30000, "EUR", "Trial", "me", "sakura", expected_close_date=str(next_month)),
        deal("Kaito renewal", 60000, "EUR", "Signed", "kenji", "kaito", closed_at=now.isoformat()),
        deal("Vale storage", 15000, "GBP", "Dropped", "lucia", "vale", closed_at=now.isoformat()),
        deal(
            "Northwind legacy",
            22000,
            "GBP",
            "Paid",
            "me",
            "northwind",
            closed_at=(now - timedelta(days=400)).isoformat(),
        ),
        deal("Sakura tasting", 5000, "EUR", "Gone", "kenji", "sakura", closed_at=now.isoformat()),
        deal("Umbra platform", 64000, "GBP", "Quote", "lucia", "umbra", expected_close_date=str(month_end)),
    ]
    for kind, contact, days in (
        ("call", "aiko_t", 7),
        ("call", "bruno", 8),
        ("meeting", "bruno", 0),
        ("email", "chloe", 40),
    ):
        _post(
            c,
            "/api/v1/activities",
            {
                "type": kind,
                "contact_id": contacts[contact]["id"],
                "occurred_at": (now - timedelta(days=days)).isoformat(),
            },
        )
    for title, owner, days, status in (
        ("Send the Kaito quote", "kenji", 0, "open"),
        ("Chase the Vale invoice", "me", -3, "open"),
        ("Renew the Northwind NDA", "me", -10, "in_progress"),
        ("Old done task", "me", -5, "done"),
        ("Prepare the Umbra demo", "lucia", 1, "open"),
    ):
        _post(
            c,
            "/api/v1/tasks",
            {
                "title": title,
                "assignee_id": owners[owner],
                "status": status,
                "due_date": (now + timedelta(days=days)).isoformat(),
            },
        )
    return {"owners": owners, "deals": deals, "contacts": contacts}


def _run(runtime: Any, chat: Any, tenant: Any, clock: FixedClock) -> Report:
    zone = ZoneInfo(runtime.settings.ai_chat_timezone)
    with runtime.db.organization_scope(tenant.id) as session:
        facts = read_facts(session, clock.now.astimezone(zone).date(), zone)
    cases = generate_cases(facts, str(tenant.org.user_id))
    assert len({c.family for c in cases}) >= 15 and len(cases) >= 70

    def asking(question: str, conversation: Any) -> dict[str, Any]:
        body = {"conversation_id": str(conversation)} if conversation else {}
        return ask(chat, question, **body)

    return run_cases(cases, asking)


def _assert_the_bar(report: Report, name: str) -> None:
    print(f"\n== paraphrases on {name}\n{report.table()}")
    totals = report.totals()
    refused = [" → ".join(o.case.questions) for o in report.outcomes if o.verdict == "refused"]
    print("refused:", refused)
    assert totals["wrong"] == 0, report.table()
    answerable = sum(totals.values())
    assert totals["right"] >= 0.9 * answerable, (totals, refused)


def test_paraphrases_on_the_chat_tests_crm(tenant, pipeline, runtime, make_gateway, dead_llm_url, clock):
    build_crm(tenant, pipeline, runtime, clock.now)
    chat = chat_client(runtime, make_gateway(dead_llm_url), tenant.org.api_key, clock)
    try:
        _assert_the_bar(_run(runtime, chat, tenant, clock), "the chat tests' CRM")
    finally:
        chat.close()


def test_paraphrases_on_a_differently_shaped_organization(make_tenant, runtime, make_gateway, dead_llm_url, clock):
    tenant = make_tenant("Second")
    built = build_second_crm(tenant, runtime, clock.now)
    chat = chat_client(runtime, make_gateway(dead_llm_url), tenant.org.api_key, clock)
    try:
        _assert_the_bar(_run(runtime, chat, tenant, clock), "a second organization")
        # by hand, from the records above
        rate = ask(chat, "what is our win rate this year?")
        assert "33.3%" in rate["answer"] and "(1 won, 2 lost)" in rate["answer"], rate["answer"]
        average = ask(chat, "average deal size")
        by_currency = {row[0]: row[1] for row in average["data"]["rows"]}
        assert by_currency == pytest.approx({"EUR": 52000, "GBP": 45250}), "averaged per currency, never mixed"
        overdue = ask(chat, "my overdue tasks")
        assert overdue["data"]["total"] == 2 and "Old done task" not in overdue["answer"]
        deals = ask(chat, "deals in Contract Sent owned by Lucia Ferreira")
        assert [row[0] for row in deals["data"]["rows"]] == ["Northwind POS"]
        asked = ask(chat, "create a task to call Aiko next Tuesday")
        assert "Which one" in asked["answer"] and "Aiko Tanaka" in asked["answer"] and asked["actions"] == []
        who = ask(chat, "deals at Kaito")
        assert {row[0] for row in who["data"]["rows"]} == {"Kaito arm controllers", "Kaito renewal"}
        assert len(built["deals"]) == 10
    finally:
        chat.close()
