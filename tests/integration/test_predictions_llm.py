"""The LLM writes the explanation from the factors, through the real gateway and a scripted
OpenAI-compatible server; it never sets the number, and when it is down or unfaithful the
template answers and the response says degraded."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from okyaku.predictions.api import create_scoring_app
from okyaku.predictions.explain_llm import FACTS_BEGIN, FACTS_END, LLMExplanationWriter
from tests.support.openai_server import Reply


def facts_of(request) -> dict:
    prompt = request.body["messages"][-1]["content"]
    return json.loads(prompt.split(FACTS_BEGIN)[1].split(FACTS_END)[0])


def faithful(request) -> Reply:
    """What a good model answers: the facts in words, plus a number of its own it must not set."""
    facts = facts_of(request)
    up = [f for f in facts["factors"] if f["direction"] == "raises"]
    down = [f for f in facts["factors"] if f["direction"] == "lowers"]
    text = f"{facts['subject']} scores {facts['score']}/100. " + " ".join(
        f"{f['label'].capitalize()} helps." for f in up
    )
    return Reply.json_object(
        {
            "explanation": text,
            "recommendations": ["Send a proposal while the conversation is warm."],
            "raising": [f["feature"] for f in up],
            "lowering": [f["feature"] for f in down],
            "score": 99,  # not part of the schema: ignored
        }
    )


def flipped(request) -> Reply:
    facts = facts_of(request)
    return Reply.json_object(
        {
            "explanation": f"The score is {facts['score']}/100 despite the meetings.",
            "raising": [],
            "lowering": [f["feature"] for f in facts["factors"] if f["direction"] == "raises"],
        }
    )


def inventing(request) -> Reply:
    facts = facts_of(request)
    return Reply.json_object({"explanation": f"It scores {facts['score']}/100; 73 similar deals closed last quarter."})


def score(runtime, org, contact_id, writer):
    client = TestClient(create_scoring_app(runtime, writer=writer), headers={"Authorization": f"Bearer {org.api_key}"})
    response = client.post(f"/api/v1/ai/predictions/lead-score/{contact_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_the_llm_writes_the_words_and_never_the_number(lead, openai_server, make_gateway):
    runtime, org, contact_id = lead
    openai_server.responder = faithful
    body = score(runtime, org, contact_id, LLMExplanationWriter(make_gateway(openai_server.base_url)))
    assert body["explanation_source"] == "llm" and body["degraded"] is False
    assert body["explanation"].startswith(f"Ada Byron scores {body['score']:.0f}/100.")
    assert body["recommendations"] == ["Send a proposal while the conversation is warm."]
    without_llm = score(runtime, org, contact_id, None)
    assert body["score"] == without_llm["score"] != 99
    assert body["factors"] == without_llm["factors"]
    # The LLM was given the factors the score was computed from, and nothing else decides them.
    sent = facts_of(openai_server.requests_to("chat")[-1])
    assert [f["feature"] for f in sent["factors"]] == [f["feature"] for f in body["factors"]]
    assert sent["score"] == round(body["score"])


@pytest.mark.parametrize("responder", [flipped, inventing], ids=["contradicting", "inventing"])
def test_an_unfaithful_explanation_is_replaced_by_the_template(lead, openai_server, make_gateway, responder):
    runtime, org, contact_id = lead
    openai_server.responder = responder
    body = score(runtime, org, contact_id, LLMExplanationWriter(make_gateway(openai_server.base_url)))
    assert body["explanation_source"] == "template" and body["degraded"] is True
    assert "Raising it: " in body["explanation"]
    assert openai_server.requests_to("chat")  # it was asked, and overruled


def test_with_the_llm_down_scores_are_still_served_with_templated_text(lead, dead_llm_url, make_gateway):
    runtime, org, contact_id = lead
    writer = LLMExplanationWriter(make_gateway(dead_llm_url))
    for _ in range(4):  # the gateway's breaker opens after three failures: later calls fail fast
        body = score(runtime, org, contact_id, writer)
        assert body["explanation_source"] == "template" and body["degraded"] is True
        assert body["method"] == "prior" and body["factors"]
        assert f"{body['score']:.0f}/100" in body["explanation"]
