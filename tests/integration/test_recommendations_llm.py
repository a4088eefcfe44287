"""The LLM words a card (reasoning, a draft email or talking points) from its facts and the
record's RAG context, through the real gateway and a scripted OpenAI-compatible server; what it
says is checked against the facts, and without it the template answers with degraded: true."""

from __future__ import annotations

import json
from typing import Any

import pytest

from okyaku.recommendations.explain import CONTEXT_BEGIN, CONTEXT_END, FACTS_BEGIN, FACTS_END, LLMCardWriter
from tests.integration.recommendations_support import Scenario
from tests.support.openai_server import Reply


def facts_of(request: Any) -> dict[str, Any]:
    prompt = request.body["messages"][-1]["content"]
    return json.loads(prompt.split(FACTS_BEGIN)[1].split(FACTS_END)[0])  # type: ignore[no-any-return]


def context_of(request: Any) -> str:
    prompt = request.body["messages"][-1]["content"]
    return str(prompt.split(CONTEXT_BEGIN)[1].split(CONTEXT_END)[0])


def faithful(request: Any) -> Reply:
    facts = facts_of(request)
    return Reply.json_object(
        {
            "reasoning": f"Hot lead {facts['contact']} scores {facts['lead_score']}/100 and has gone "
            f"{facts['days_since_last_touch']} days without a touch.",
            "talking_points": ["Ask what changed since the last conversation."],
            "draft_email": {"subject": "Quick follow-up", "body": f"Hi {facts['contact']}, shall we talk this week?"},
            "cited_facts": ["lead_score", "days_since_last_touch"],
        }
    )


def inventing(request: Any) -> Reply:
    facts = facts_of(request)
    return Reply.json_object(
        {
            "reasoning": f"{facts['contact']} scores {facts['lead_score']}/100; 37 similar leads signed last month.",
            "cited_facts": ["lead_score"],
        }
    )


def citing_unknown(request: Any) -> Reply:
    return Reply.json_object({"reasoning": "The budget was approved.", "cited_facts": ["budget_approved"]})


def hot_lead_card(scenario: Scenario) -> dict[str, Any]:
    company = scenario.post("companies", {"name": "Globex", "industry": "Logistics"})
    lead = scenario.contact("Ada", lifecycle_stage="mql", email="ada@globex.example", company_id=company["id"])
    scenario.score(lead["id"], "lead_score", 82)
    scenario.clock.advance(10)
    return scenario.card("contact", lead["id"], "hot_lead_no_touch")


def explain(scenario: Scenario, card: dict[str, Any]) -> dict[str, Any]:
    response = scenario.api.get(f"/api/v1/ai/recommendations/{card['id']}/explain")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_the_llm_words_the_card_from_its_facts_and_context(scenario: Scenario, openai_server, make_gateway) -> None:  # type: ignore[no-untyped-def]
    openai_server.responder = faithful
    scenario.writer = LLMCardWriter(make_gateway(openai_server.base_url))
    card = hot_lead_card(scenario)
    body = explain(scenario, card)
    assert body["source"] == "llm" and body["degraded"] is False
    assert body["reasoning"].startswith("Hot lead Ada Tester scores 82/100")
    assert body["draft_email"] == {"subject": "Quick follow-up", "body": "Hi Ada Tester, shall we talk this week?"}
    assert body["cited_facts"] == ["lead_score", "days_since_last_touch"]
    sent = openai_server.requests_to("chat")[-1]
    assert facts_of(sent) == {k: v for k, v in card["facts"].items()}
    assert "Ada Tester" in context_of(sent) and "Globex" in context_of(sent)  # the record's RAG context
    assert body["citations"] and body["citations"][0]["entity_id"] == card["entity_id"]

    # Apply uses the LLM's draft for the email it proposes.
    applied = scenario.api.post(f"/api/v1/ai/recommendations/{card['id']}/apply").json()
    changes = applied["pending_action"]["changes"]
    assert applied["pending_action"]["action"] == "draft_email" and applied["status"] == "pending"
    assert changes["subject"]["after"] == "Quick follow-up"
    assert changes["custom_properties"]["after"] == {"email_status": "queued", "email_to": "ada@globex.example"}


@pytest.mark.parametrize("responder", [inventing, citing_unknown], ids=["inventing_numbers", "unknown_fact"])
def test_unfaithful_words_are_replaced_by_the_template(
    scenario: Scenario, openai_server, make_gateway, responder
) -> None:  # type: ignore[no-untyped-def]
    openai_server.responder = responder
    scenario.writer = LLMCardWriter(make_gateway(openai_server.base_url))
    body = explain(scenario, hot_lead_card(scenario))
    assert body["source"] == "template" and body["degraded"] is True and body["draft_email"] is None
    assert "The lead score is 82/100" in body["reasoning"]
    assert openai_server.requests_to("chat")  # it was asked, and overruled


def test_without_the_llm_the_reasons_are_templated_and_there_is_no_draft(
    scenario: Scenario, dead_llm_url, make_gateway
) -> None:  # type: ignore[no-untyped-def]
    scenario.writer = LLMCardWriter(make_gateway(dead_llm_url))
    card = hot_lead_card(scenario)
    for _ in range(2):
        body = explain(scenario, card)
        assert body["source"] == "template" and body["degraded"] is True
        assert body["draft_email"] is None and body["talking_points"] == []
        assert "nothing has been logged for 10 days" in body["reasoning"]
        assert "Ranked by expected value" in body["reasoning"]
    applied = scenario.api.post(f"/api/v1/ai/recommendations/{card['id']}/apply").json()
    assert applied["pending_action"]["changes"]["subject"]["after"] == "Following up"  # the card's own text
