"""Chat without the LLM (nothing listens at OLLAMA_BASE_URL): the deterministic parser answers the
seed's example questions from the rows, cited, with degraded: true — and says plainly when it cannot."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from okyaku.agents.models import PendingAction
from okyaku.chat.fallback import CANNOT
from okyaku.db.models import Task
from tests.integration.chat_support import FixedClock, ask, build_crm, chat_client, column


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def crm(tenant, pipeline, runtime, clock):
    return build_crm(tenant, pipeline, runtime, clock.now)


@pytest.fixture
def chat(runtime, make_gateway, dead_llm_url, tenant, clock, crm):
    client = chat_client(runtime, make_gateway(dead_llm_url), tenant.org.api_key, clock)
    yield client
    client.close()


def cited(result, entity_type):
    return {c["entity_id"] for c in result["citations"] if c["entity_type"] == entity_type}


def test_deals_closing_this_month(chat, crm):
    result = ask(chat, "Which deals are closing this month?")
    assert result["degraded"] is False and result["planner"] == "parser"  # the parser needs no model
    assert sorted(column(result, "name")) == ["Acme expansion", "Globex renewal"]
    assert result["data"]["total"] == 2
    assert result["data"]["totals"] == {"total_amount": 42000}
    assert "42,000" in result["answer"] and result["answer"].startswith("2 open deals closing this month")
    assert cited(result, "deal") == {crm["deals"]["acme_expansion"]["id"], crm["deals"]["globex_renewal"]["id"]}
    assert crm["companies"]["acme"]["id"] in cited(result, "company")
    assert result["plan"]["entity"] == "deals"
    assert not any("language model" in n for n in result["notes"])


def test_hottest_leads_come_from_the_current_lead_scores(chat, crm):
    result = ask(chat, "Who are my hottest leads?")
    assert column(result, "name") == ["Sarah Lee", "Mary Major", "John Smith"]
    assert column(result, "lead_score") == [87.5, 65, 42]
    assert cited(result, "contact") == {crm["contacts"][k]["id"] for k in ("sarah", "mary", "john")}


def test_summarise_activities_with_a_company_includes_its_contacts_activities(chat, crm):
    result = ask(chat, "Summarise activities with Acme Corp")
    assert sorted(column(result, "subject")) == ["Pricing call", "Quarterly review"]
    assert result["data"]["total"] == 2
    assert "with Acme Corp" in result["answer"]
    assert crm["companies"]["acme"]["id"] in cited(result, "company")


def test_unknown_company_is_said_not_guessed(chat, crm):
    result = ask(chat, "summarise activities with Umbrella")
    assert 'found no company or contact called "Umbrella"' in result["answer"]
    assert result["data"]["rows"] == []


def test_pipeline_value_by_stage_is_summed_by_the_database(chat, crm):
    result = ask(chat, "What's the pipeline value by stage?")
    rows = {row[0]: row[1:] for row in result["data"]["rows"]}
    assert rows == {"Negotiation": [30000, 1], "Proposal": [12000, 1], "Qualification": [5000, 1]}
    assert column(result, "stage_name") == ["Negotiation", "Proposal", "Qualification"]
    assert "30,000" in result["answer"]
    assert cited(result, "pipeline_stage") == {crm["stages"][s] for s in ("Negotiation", "Proposal", "Qualification")}


def test_contacts_not_talked_to_in_30_days_include_the_never_contacted(chat, crm):
    result = ask(chat, "Show me contacts we haven't talked to in 30 days")
    assert sorted(column(result, "name")) == ["John Doe", "John Smith", "Mary Major"]
    assert result["data"]["total"] == 3


def test_deals_won_this_quarter_and_their_total(chat, crm):
    result = ask(chat, "Which deals did we win this quarter and their total?")
    assert column(result, "name") == ["Acme platform"]
    assert result["data"]["totals"] == {"total_amount": 20000}
    assert "20,000" in result["answer"]


def test_deals_lost_this_month(chat, crm):
    result = ask(chat, "deals lost this month")
    assert column(result, "name") == ["Globex tooling"]
    assert column(result, "lost_reason") == ["Went with a competitor on price"]


def test_count_of_deals_by_stage_and_contacts_by_company(chat, crm):
    deals = ask(chat, "count of deals by stage")
    assert {r[0]: r[1] for r in deals["data"]["rows"]} == {
        "Closed Won": 2,
        "Negotiation": 1,
        "Proposal": 1,
        "Qualification": 1,
        "Closed Lost": 1,
    }
    contacts = ask(chat, "how many contacts by company")
    assert {r[0]: r[1] for r in contacts["data"]["rows"]} == {"Acme Corp": 2, "Globex": 1, "Initech": 1}
    total = ask(chat, "how many contacts do we have")
    assert total["data"]["rows"] == [[4]] and total["answer"] == "You have 4 contacts."


@pytest.mark.parametrize(
    "question",
    ["why did we lose the Globex deal?", "what's our churn outlook", "deals closing soon", "how many deals by colour"],
)
def test_anything_else_gets_a_plain_cannot(chat, crm, question):
    result = ask(chat, question)
    assert result["answer"] == CANNOT
    assert result["degraded"] is True and result["plan"] is None and result["data"]["rows"] == []


def test_follow_ups_refine_the_previous_plan(chat, crm):
    first = ask(chat, "deals closing this month")
    conversation = first["conversation_id"]
    second = ask(chat, "and only those in Germany?", conversation_id=conversation)
    assert column(second, "name") == ["Acme expansion"]
    assert {"field": "company.country", "op": "eq", "value": "Germany", "include_null": False} in second["plan"][
        "filters"
    ]
    third = ask(chat, "sort them by amount", conversation_id=conversation)
    assert column(third, "name") == ["Acme expansion"]
    assert third["plan"]["order_by"] == [{"field": "amount", "direction": "desc"}]
    fresh = ask(chat, "deals closing this month")
    sorted_all = ask(chat, "sort them by amount", conversation_id=fresh["conversation_id"])
    assert column(sorted_all, "amount") == [30000, 12000]


def test_create_a_task_becomes_a_pending_action_not_a_task(chat, crm, runtime, tenant):
    result = ask(chat, "Create a task to call Sarah next Tuesday")
    assert len(result["actions"]) == 1
    action = result["actions"][0]
    assert action["action"] == "create_task" and action["status"] == "pending"
    assert "approval" in result["answer"]
    assert crm["contacts"]["sarah"]["id"] in cited(result, "contact")
    with runtime.db.organization_scope(tenant.id) as session:
        row = session.get(PendingAction, action["pending_action_id"])
        assert row is not None and row.agent == "chat" and row.status == "pending"
        assert row.changes["contact_id"]["after"] == crm["contacts"]["sarah"]["id"]
        assert row.changes["due_date"]["after"].startswith(action["changes"]["due_date"]["after"][:10])
        assert session.scalar(select(func.count()).select_from(Task)) == 0


def test_an_ambiguous_person_is_asked_back(chat, crm, runtime, tenant):
    result = ask(chat, "create a task to call John tomorrow")
    assert "Which one" in result["answer"] and "John Smith" in result["answer"] and "John Doe" in result["answer"]
    assert result["actions"] == []


def test_streaming_without_the_llm_sends_the_templated_answer_then_the_final_event(chat, crm):
    with chat.stream("POST", "/api/v1/ai/chat/stream", json={"message": "deals closing this month"}) as response:
        assert response.status_code == 200
        blocks = "".join(response.iter_text()).strip().split("\n\n")
    kinds = [b.split("\n", 1)[0] for b in blocks]
    assert kinds[-1] == "event: final" and set(kinds[:-1]) == {"event: delta"}
    final = json.loads(blocks[-1].split("data: ", 1)[1])
    streamed = "".join(json.loads(b.split("data: ", 1)[1])["text"] for b in blocks[:-1])
    assert streamed.strip() == final["answer"] and final["planner"] == "parser"


def test_rows_are_capped_and_the_answer_says_so(runtime, make_gateway, dead_llm_url, tenant, clock, crm):
    from okyaku.runtime import Runtime

    capped = Runtime(runtime.settings.model_copy(update={"ai_chat_row_limit": 1}), db=runtime.db)
    client = chat_client(capped, make_gateway(dead_llm_url), tenant.org.api_key, clock)
    result = ask(client, "deals closing this month")
    assert len(result["data"]["rows"]) == 1 and result["data"]["total"] == 2
    assert "Showing 1 of 2 matching rows." in result["notes"] and "(showing 1)" in result["answer"]
    client.close()


def test_the_chat_transaction_cannot_write(runtime, tenant):
    from sqlalchemy import exc, text

    from okyaku.chat.execute import read_only

    with (
        pytest.raises(exc.InternalError, match="read-only transaction"),
        read_only(runtime.db, tenant.id, timeout_ms=1000, zone="UTC") as session,
    ):
        session.execute(text("INSERT INTO companies (name) VALUES ('written from chat')"))


def test_only_those_in_a_value_no_field_holds_says_so(chat, crm):
    first = ask(chat, "deals closing this month")
    result = ask(chat, "only those in Atlantis", conversation_id=first["conversation_id"])
    assert result["answer"].startswith('None of these records has "atlantis" as a stage name or company country')
    assert result["data"]["rows"] == []
