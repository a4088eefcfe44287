"""The seed's example questions against the demo data with the LLM down: each answer's numbers
match what the records say (computed here independently, in Python over the rows), with
citations, and degraded: true."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from okyaku.db.models import Activity, Company, Contact, Deal, PipelineStage
from okyaku.local.demo import seed_demo_data
from okyaku.predictions.models import CurrentPrediction
from okyaku.predictions.service import PredictionService
from okyaku.tenancy import create_organization
from tests.integration.chat_support import FixedClock, ask, chat_client, column


@pytest.fixture(scope="module")
def demo(pg):
    """One demo organization for the module (seeding takes seconds), scored."""
    from okyaku.config import Settings
    from okyaku.db import Database
    from okyaku.runtime import Runtime

    db = Database(pg.app_url)
    runtime = Runtime(Settings(database_url=pg.app_url), db=db, publisher=None)
    org = create_organization(db, f"Demo chat {uuid.uuid4().hex[:6]}", "admin@demo-chat.example")
    now = datetime.now(UTC)
    seed_demo_data(runtime, org.organization_id, org.user_id, now=now)
    PredictionService(runtime).rescore_all(org.organization_id, "lead")
    with db.organization_scope(org.organization_id) as session:
        records = {
            "deals": session.scalars(select(Deal)).unique().all(),
            "stages": {s.id: s for s in session.scalars(select(PipelineStage))},
            "contacts": session.scalars(select(Contact)).all(),
            "companies": {c.id: c for c in session.scalars(select(Company))},
            "activities": session.scalars(select(Activity)).all(),
            "scores": {
                p.entity_id: p.score for p in session.scalars(select(CurrentPrediction)) if p.target == "lead_score"
            },
        }
    yield runtime, org, now, records
    db.dispose()


@pytest.fixture
def chat(demo, make_gateway, dead_llm_url):
    runtime, org, now, _ = demo
    client = chat_client(runtime, make_gateway(dead_llm_url), org.api_key, FixedClock(now))
    yield client
    client.close()


def _status(deal, stages):
    stage = stages[deal.stage_id]
    return "won" if stage.is_won else "lost" if stage.is_lost else "open"


def test_deals_closing_this_month(chat, demo):
    _, _, now, r = demo
    start = now.date().replace(day=1)
    end = (start + timedelta(days=32)).replace(day=1)
    expected = [
        d
        for d in r["deals"]
        if _status(d, r["stages"]) == "open" and d.expected_close_date and start <= d.expected_close_date < end
    ]
    result = ask(chat, "Which deals are closing this month?")
    assert result["planner"] == "parser" and result["data"]["total"] == len(expected)
    assert result["data"]["totals"]["total_amount"] == pytest.approx(float(sum(d.amount or 0 for d in expected)))
    assert {c["entity_id"] for c in result["citations"] if c["entity_type"] == "deal"} == {
        str(d.id) for d in expected[:50]
    } or len(expected) > 50


def test_hottest_leads(chat, demo):
    _, _, _, r = demo
    assert r["scores"], "the demo organization was scored"
    top = sorted(r["scores"].values(), reverse=True)[:10]
    result = ask(chat, "Who are my hottest leads?")
    assert column(result, "lead_score") == pytest.approx([round(s, 2) for s in top], abs=0.01)
    assert len([c for c in result["citations"] if c["entity_type"] == "contact"]) == len(top)


def test_summarise_activities_with_a_company(chat, demo):
    _, _, _, r = demo
    contacts = {c.id: c for c in r["contacts"]}
    deals = {d.id: d for d in r["deals"]}

    def company_of(a):
        return (
            a.company_id
            or (contacts[a.contact_id].company_id if a.contact_id else None)
            or (deals[a.deal_id].company_id if a.deal_id else None)
        )

    counts = Counter(company_of(a) for a in r["activities"] if company_of(a))
    names = Counter(c.name.lower() for c in r["companies"].values())
    company_id, count = next(
        (cid, n) for cid, n in counts.most_common() if names[r["companies"][cid].name.lower()] == 1
    )
    name = r["companies"][company_id].name
    result = ask(chat, f"Summarise activities with {name}")
    assert result["data"]["total"] == count
    assert f"with {name}" in result["answer"]
    assert {"entity_type": "company", "entity_id": str(company_id), "label": name} in result["citations"]


def test_pipeline_value_by_stage(chat, demo):
    _, _, _, r = demo
    expected: dict[str, Decimal] = {}
    for d in r["deals"]:
        if _status(d, r["stages"]) == "open":
            name = r["stages"][d.stage_id].name
            expected[name] = expected.get(name, Decimal(0)) + (d.amount or 0)
    result = ask(chat, "What's the pipeline value by stage?")
    got: dict[str, float] = {}
    for stage, value, _ in result["data"]["rows"]:
        got[stage] = got.get(stage, 0) + value  # stages of two pipelines may share a name
    assert got == pytest.approx({k: float(v) for k, v in expected.items()})


def test_contacts_not_talked_to_in_30_days(chat, demo):
    _, _, now, r = demo
    cutoff = datetime.combine(now.date() - timedelta(days=29), time.min, UTC)
    latest: dict[uuid.UUID, datetime] = {}
    for a in r["activities"]:
        if a.contact_id:
            latest[a.contact_id] = max(latest.get(a.contact_id, a.occurred_at), a.occurred_at)
    expected = [c for c in r["contacts"] if c.id not in latest or latest[c.id] < cutoff]
    result = ask(chat, "Show me contacts we haven't talked to in 30 days")
    assert result["data"]["total"] == len(expected)


def test_deals_won_this_quarter_and_their_total(chat, demo):
    _, _, now, r = demo
    today = now.date()
    start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    won = [d for d in r["deals"] if _status(d, r["stages"]) == "won" and d.closed_at and d.closed_at.date() >= start]
    result = ask(chat, "Which deals did we win this quarter and their total?")
    assert result["data"]["total"] == len(won)
    assert result["data"]["totals"]["total_amount"] == pytest.approx(float(sum(d.amount or 0 for d in won)))


def test_count_of_deals_by_stage(chat, demo):
    _, _, _, r = demo
    expected = Counter(r["stages"][d.stage_id].name for d in r["deals"])
    result = ask(chat, "count of deals by stage")
    got: Counter[str] = Counter()
    for stage, count in result["data"]["rows"]:
        got[stage] += count
    assert got == expected
