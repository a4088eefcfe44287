"""Every LLM path but chat against a real model server (llama.cpp + SmolLM2-135M): content, the
conversation analysis (API and queue), and the recommendation card's words.

Properties, never texts: no 5xx outside the error shape; what the model writes is shown only when
checked (quotes verbatim in the text, numbers in the facts), otherwise the template answers and says
so; degraded flags and reasons are true; nothing is dead-lettered because of what the model did."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from okyaku.anomalies.insights import template_narrative
from okyaku.anomalies.service import AnomalyService
from okyaku.content.api import create_content_app
from okyaku.conversation.api import create_conversation_app
from okyaku.conversation.service import ConversationService
from okyaku.predictions.explain_llm import LLMExplanationWriter
from okyaku.recommendations.explain import LLMCardWriter
from okyaku.tenancy import create_organization
from tests.integration.test_conversation import activity_events, create_activity, deliver
from tests.integration.test_predictions_llm import score
from tests.integration.test_recommendations_llm import explain, hot_lead_card

CALL_NOTES = (
    "Call with Dana Whitfield (VP Operations, Northwind). Dana said the budget of $48,000 is approved for Q1 "
    "but legal must review the data processing agreement first. She is worried about the migration timeline "
    "and mentioned that Contoso offered a lower price. Next step: we send the security questionnaire by "
    "Friday and book a demo for her team next Tuesday. Overall she sounded positive about the rollout."
)


def assert_error_shape(response: Any) -> None:
    """A failure is a 4xx/503 in the project's error shape, never a bare 500."""
    assert response.status_code < 500 or response.status_code == 503, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]


@pytest.fixture
def content(real_llm, make_gateway, runtime, db):
    key = create_organization(db, f"Content {uuid.uuid4().hex[:6]}", "admin@content.example").api_key
    client = TestClient(
        create_content_app(runtime, make_gateway(real_llm.base_url, timeout_s=20.0, max_retries=0)),
        headers={"Authorization": f"Bearer {key}"},
    )
    yield client
    client.close()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("generate", {"topic": "contract renewals for small teams", "platform": "linkedin"}),
        ("generate", {"topic": "a spring webinar", "platform": "x", "include_cta": True}),
        ("variations", {"content": "Our new pipeline board is live for every team.", "platform": "x"}),
        ("improve", {"content": "we has new feature its good try it", "platform": "linkedin"}),
        ("hashtags", {"content": "Renewal season: lock in your plan before prices change.", "platform": "instagram"}),
        ("adapt", {"content": "Our new pipeline board is live.", "source_platform": "x", "target_platform": "email"}),
    ],
)
def test_content_is_within_its_platform_limits_or_a_clear_error(content, path, body):
    response = content.post(f"/api/v1/ai/content/{path}", json=body)
    assert_error_shape(response)
    if response.status_code != 200:
        return
    result = response.json()
    for item in result.get("variations") or [result]:
        if "character_limit" in item and "character_count" in item:
            assert item["character_count"] <= item["character_limit"]  # counted as the platform counts
    if path == "hashtags":
        assert all(re.fullmatch(r"\w+", tag) for tag in result["hashtags"])


@pytest.fixture
def conversation(real_llm, make_gateway, runtime, tenant):
    gateway = make_gateway(real_llm.base_url, timeout_s=60.0, max_retries=0)
    client = TestClient(
        create_conversation_app(ConversationService(runtime, gateway)),
        headers={"Authorization": f"Bearer {tenant.org.api_key}"},
    )
    yield client
    client.close()


def test_a_conversation_analysis_shows_only_what_the_text_says(conversation):
    body = {"text": CALL_NOTES, "type": "call", "direction": "outbound", "occurred_at": "2026-11-18T09:00:00Z"}
    response = conversation.post("/api/v1/ai/conversation/analyze-text", json=body)
    assert_error_shape(response)
    answer = response.json()
    assert answer["stored"] is False
    assert [m["amount"] for m in answer["rules"]["money"]] == [48000.0]  # the rules floor, whatever the model did
    if answer["status"] != "analysed":
        assert answer["analysis"] is None and answer["message"]
        assert "unavailable" not in answer["message"]  # the server answered: it is not "unavailable"
        return
    analysis = answer["analysis"]
    for key in ("action_items", "objections", "key_points", "competitors", "commitments"):
        for item in analysis.get(key) or []:
            if isinstance(item, dict) and item.get("quote"):
                assert item["quote"].lower() in CALL_NOTES.lower(), f"{key}: {item['quote']!r} is not in the text"


def test_a_recommendation_is_worded_from_its_facts_or_by_the_template(scenario, real_llm, make_gateway):
    scenario.writer = LLMCardWriter(make_gateway(real_llm.base_url, timeout_s=30.0, max_retries=0))
    card = hot_lead_card(scenario)
    body = explain(scenario, card)
    facts = " ".join(str(v) for v in card["facts"].values())
    if body["source"] == "llm":
        assert body["degraded"] is False
        for number in re.findall(r"\d+(?:\.\d+)?", body["reasoning"]):
            assert number in facts or number == "100", f"{number} is not a fact of the card"
    else:
        assert body["degraded"] is True and "The lead score is 82/100" in body["reasoning"]


def test_a_lead_score_is_the_model_s_never_the_llm_s_and_its_words_are_checked(lead, real_llm, make_gateway):
    runtime, org, contact_id = lead
    writer = LLMExplanationWriter(make_gateway(real_llm.base_url, timeout_s=30.0, max_retries=0))
    body = score(runtime, org, contact_id, writer)
    without_llm = score(runtime, org, contact_id, None)
    assert body["score"] == without_llm["score"] and body["factors"] == without_llm["factors"]
    if body["explanation_source"] == "llm":
        assert body["degraded"] is False
        stated = re.findall(r"\d+(?:\.\d+)?", body["explanation"])
        given = json.dumps(body["factors"]) + f" {body['score']} {round(body['score'])} 100"
        assert all(n in given for n in stated), body["explanation"]
    else:
        assert body["degraded"] is True and f"{body['score']:.0f}/100" in body["explanation"]


def test_a_weekly_insight_narrative_states_only_its_figures(
    tenant, runtime, real_llm, make_gateway, week_with_activity
):
    service = AnomalyService(runtime, make_gateway(real_llm.base_url, timeout_s=30.0, max_retries=0))
    result = service.weekly(tenant.id, week_with_activity)
    (insight,) = AnomalyService(runtime).list_insights(tenant.id, week=week_with_activity)
    if result["narrative_source"] == "llm":
        assert result["degraded"] is False
        figures = json.dumps(insight.figures)
        for number in re.findall(r"\d+(?:\.\d+)?", insight.narrative.replace(",", "")):
            assert number in figures or str(float(number)) in figures, insight.narrative
    else:
        assert result["degraded"] is True and insight.narrative == template_narrative(insight.figures)
        assert insight.rejected_reason  # why the model's words were not used


def test_the_conversation_queue_keeps_nothing_in_its_dead_letters_whatever_the_model_says(
    tenant, publisher, runtime, real_llm, make_gateway
):
    activities = [create_activity(tenant, body=text) for text in (CALL_NOTES, "Left a voicemail.")]
    service = ConversationService(runtime, make_gateway(real_llm.base_url, timeout_s=60.0, max_retries=0))
    events = [e for a in activities for e in activity_events(publisher, a["id"])]
    assert deliver(service, events) == {"batchItemFailures": []}  # nothing retried, nothing dead-lettered
    client = TestClient(create_conversation_app(service), headers={"Authorization": f"Bearer {tenant.org.api_key}"})
    for activity in activities:
        answer = client.get(f"/api/v1/ai/conversation/activities/{activity['id']}").json()
        assert answer["status"] in {"analysed", "waiting_for_llm", "not_analysed"}, answer
        if answer["status"] == "analysed":
            for item in answer["analysis"].get("action_items") or []:
                assert item["quote"].lower() in activity["body"].lower()
    client.close()
