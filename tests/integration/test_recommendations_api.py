"""Ranking, feedback, snooze/dismiss/done, apply through the approval queue, priorities,
acceptance rates and isolation, through the recommendations HTTP API on a real Postgres."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from okyaku.agents.approvals import ApprovalService
from okyaku.agents.models import PendingAction
from okyaku.config import Settings
from okyaku.db.models import User
from okyaku.recommendations.api import create_recommendations_app
from okyaku.recommendations.ranking import BASE_UPLIFT, EFFORT_HOURS
from okyaku.recommendations.service import RecommendationService
from okyaku.runtime import Runtime
from tests.integration.recommendations_support import Scenario


def formula(ranking: dict) -> float:  # type: ignore[type-arg]
    return (
        ranking["value"]
        * ranking["uplift"]
        * ranking["severity"]
        * (0.5 + ranking["score"])
        * ranking["urgency"]
        * ranking["feedback"]
        / (1 + ranking["effort_hours"])
    )


def test_cards_are_ranked_by_the_expected_value_formula(scenario: Scenario) -> None:
    company = scenario.post("companies", {"name": "Rank Co"})
    big = scenario.deal("Big", amount=100_000, company_id=company["id"])
    small = scenario.deal("Small", amount=10_000, company_id=company["id"])
    scenario.clock.advance(20)
    cards = scenario.cards("company", company["id"])
    assert [(c["entity_id"], c["rule"]) for c in cards][:2] == [
        (big["id"], "deal_no_touch"),
        (small["id"], "deal_no_touch"),
    ]
    values = [c["expected_value"] for c in cards]
    assert values == sorted(values, reverse=True)
    for card in cards:
        terms = card["ranking"]
        assert terms["uplift"] == BASE_UPLIFT[card["type"]] and terms["effort_hours"] == EFFORT_HOURS[card["type"]]
        assert card["expected_value"] == pytest.approx(formula(terms), rel=1e-3)
        assert terms["feedback"] == 1.0 and "formula" in terms
    by_deal = {c["entity_id"]: c for c in cards if c["rule"] == "deal_no_touch"}
    assert (
        by_deal[big["id"]]["ranking"]["value"] == 100_000
        and by_deal[big["id"]]["ranking"]["value_source"] == "deal amount"
    )
    assert by_deal[big["id"]]["expected_value"] == pytest.approx(10 * by_deal[small["id"]]["expected_value"], rel=1e-3)


def test_a_type_the_user_keeps_rejecting_drops_in_the_ranking(scenario: Scenario) -> None:
    company = scenario.post("companies", {"name": "Feedback Co"})
    scenario.deal("Proposal due", stage="Proposal", amount=20_000, company_id=company["id"])
    lead = scenario.contact("Hot", lifecycle_stage="lead", company_id=company["id"])
    scenario.score(lead["id"], "lead_score", 85)
    scenario.clock.advance(1)
    before = scenario.cards("company", company["id"])
    assert [c["type"] for c in before] == ["send_proposal", "create_task"]
    proposal = before[0]
    for _ in range(6):
        scenario.feedback(proposal["id"], "not_helpful")
    after = scenario.cards("company", company["id"])
    assert [c["type"] for c in after] == ["create_task", "send_proposal"]
    terms = after[1]["ranking"]
    assert (terms["feedback_rejected"], terms["feedback_scope"]) == (6, "user")
    assert terms["feedback"] == pytest.approx((0 + 2) / (6 + 4) / 0.5)
    assert after[1]["expected_value"] == pytest.approx(proposal["expected_value"] * terms["feedback"], rel=1e-3)


def test_dismissed_and_snoozed_cards_stay_away_until_their_time(scenario: Scenario) -> None:
    deal = scenario.deal("Stale", amount=5000)
    scenario.clock.advance(20)
    card = scenario.card("deal", deal["id"], "deal_no_touch")
    until = (scenario.clock.now + timedelta(days=2)).isoformat()
    snoozed = scenario.feedback(card["id"], "snoozed", until=until)
    assert snoozed["status"] == "snoozed"
    assert "deal_no_touch" not in scenario.rules("deal", deal["id"])  # a refresh does not bring it back
    scenario.clock.advance(2.1)
    back = scenario.card("deal", deal["id"], "deal_no_touch")
    assert back["id"] == card["id"] and back["status"] == "open"  # the same card, not a duplicate

    scenario.feedback(card["id"], "dismissed")
    scenario.clock.advance(29)
    assert "deal_no_touch" not in scenario.rules("deal", deal["id"])
    scenario.clock.advance(1.1)  # AI_RECOMMENDATIONS_DISMISS_DAYS = 30
    assert scenario.card("deal", deal["id"], "deal_no_touch")["id"] == card["id"]


def test_done_closes_a_card_until_the_situation_is_a_new_one(scenario: Scenario) -> None:
    deal = scenario.deal("Handled", amount=5000)
    scenario.clock.advance(20)
    card = scenario.card("deal", deal["id"], "deal_no_touch")
    assert scenario.feedback(card["id"], "done")["status"] == "done"
    scenario.clock.advance(1)
    assert "deal_no_touch" not in scenario.rules("deal", deal["id"])
    scenario.activity(0, deal_id=deal["id"])  # the call happened; weeks later it is stale again
    scenario.clock.advance(15)
    again = scenario.card("deal", deal["id"], "deal_no_touch")
    assert again["id"] == card["id"] and again["status"] == "open"


def test_snooze_needs_a_future_until(scenario: Scenario) -> None:
    deal = scenario.deal("Stale", amount=5000)
    scenario.clock.advance(20)
    card = scenario.card("deal", deal["id"], "deal_no_touch")
    path = f"/api/v1/ai/recommendations/{card['id']}/feedback"
    response = scenario.api.post(path, json={"feedback": "snoozed"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"
    past = (scenario.clock.now - timedelta(days=1)).isoformat()
    assert scenario.api.post(path, json={"feedback": "snoozed", "until": past}).status_code == 422
    assert scenario.api.post(path, json={"feedback": "loved"}).status_code == 422


def pending_actions(scenario: Scenario) -> int:
    with scenario.runtime.db.organization_scope(scenario.organization_id) as session:
        return int(session.scalar(select(func.count()).select_from(PendingAction)) or 0)


def test_apply_proposes_then_approval_writes_the_record_with_its_events(scenario: Scenario, publisher) -> None:  # type: ignore[no-untyped-def]
    lead = scenario.contact("Hot", lifecycle_stage="lead", owner_id=str(scenario.user_id))
    scenario.score(lead["id"], "lead_score", 88)
    card = scenario.card("contact", lead["id"], "hot_lead_unattended")
    first = scenario.api.post(f"/api/v1/ai/recommendations/{card['id']}/apply")
    assert first.status_code == 200, first.text
    applied = first.json()
    assert applied["status"] == "pending" and applied["already_applied"] is False
    action = applied["pending_action"]
    assert (action["action"], action["operation"], action["entity_type"]) == ("create_task", "create", "task")
    assert action["changes"]["contact_id"]["after"] == lead["id"]
    second = scenario.api.post(f"/api/v1/ai/recommendations/{card['id']}/apply").json()
    assert second["already_applied"] is True and second["pending_action"]["id"] == action["id"]
    assert pending_actions(scenario) == 1
    assert scenario.crm.get("/api/v1/tasks", params={"contact_id": lead["id"]}).json()["data"] == []

    publisher.events.clear()
    approved = ApprovalService(scenario.runtime).approve(
        scenario.organization_id, uuid.UUID(action["id"]), reviewer_id=scenario.user_id
    )
    assert approved.status == "approved"
    (task,) = scenario.crm.get("/api/v1/tasks", params={"contact_id": lead["id"]}).json()["data"]
    assert task["title"].startswith("Follow up with Hot") and task["assignee_id"] == str(scenario.user_id)
    assert [(e.entity_type, e.operation, str(e.entity_id)) for e in publisher.events] == [
        ("task", "created", task["id"])
    ]
    # Applied is closed: the lead now has an open task, so the rule does not fire again either.
    assert "hot_lead_unattended" not in scenario.rules("contact", lead["id"])


def test_a_stage_move_waits_for_approval_and_then_moves_the_deal(scenario: Scenario, publisher) -> None:  # type: ignore[no-untyped-def]
    deal = scenario.deal("Stuck", amount=9000)
    scenario.clock.advance(50)
    card = scenario.card("deal", deal["id"], "deal_stage_stalled")
    applied = scenario.api.post(f"/api/v1/ai/recommendations/{card['id']}/apply").json()
    action = applied["pending_action"]
    assert (action["action"], action["entity_id"], action["status"]) == ("update_deal", deal["id"], "pending")
    assert action["changes"]["stage_id"]["after_label"] == "Proposal"
    publisher.events.clear()
    ApprovalService(scenario.runtime).approve(scenario.organization_id, uuid.UUID(action["id"]), reviewer_id=None)
    moved = scenario.crm.get(f"/api/v1/deals/{deal['id']}").json()
    assert moved["stage_id"] == scenario.stages["Proposal"]
    assert [(e.entity_type, e.operation) for e in publisher.events] == [("deal", "updated")]


def test_an_overdue_task_card_proposes_a_new_due_date(scenario: Scenario) -> None:
    deal = scenario.deal("Late task", amount=9000)
    task = scenario.task(-4, title="Send the contract", deal_id=deal["id"])
    card = scenario.card("deal", deal["id"], "overdue_tasks")
    action = scenario.api.post(f"/api/v1/ai/recommendations/{card['id']}/apply").json()["pending_action"]
    assert (action["action"], action["operation"], action["entity_id"]) == ("update_task", "update", task["id"])
    ApprovalService(scenario.runtime).approve(scenario.organization_id, uuid.UUID(action["id"]), reviewer_id=None)
    moved = scenario.crm.get(f"/api/v1/tasks/{task['id']}").json()
    assert datetime.fromisoformat(moved["due_date"]) > scenario.clock.now and moved["version"] == task["version"] + 1
    assert "overdue_tasks" not in scenario.rules("deal", deal["id"])


def test_with_approval_off_a_low_risk_card_is_applied_at_once(
    scenario: Scenario, settings: Settings, db, publisher
) -> None:  # type: ignore[no-untyped-def]
    scenario.runtime = Runtime(
        settings.model_copy(update={"ai_require_approval_for_writes": False}), db=db, publisher=publisher
    )
    lead = scenario.contact("Hot", lifecycle_stage="lead")
    scenario.score(lead["id"], "lead_score", 90)
    card = scenario.card("contact", lead["id"], "hot_lead_unattended")
    applied = scenario.api.post(f"/api/v1/ai/recommendations/{card['id']}/apply").json()
    assert applied["status"] == "applied" and applied["pending_action"]["auto_applied"] is True
    assert len(scenario.crm.get("/api/v1/tasks", params={"contact_id": lead["id"]}).json()["data"]) == 1
    again = scenario.api.post(f"/api/v1/ai/recommendations/{card['id']}/apply").json()
    assert again["already_applied"] is True
    assert len(scenario.crm.get("/api/v1/tasks", params={"contact_id": lead["id"]}).json()["data"]) == 1


def test_priorities_are_the_callers_owned_records_best_first(scenario: Scenario) -> None:
    with scenario.runtime.db.organization_scope(scenario.organization_id) as session:
        colleague = User(email="colleague@acme.example", name="Colleague")
        session.add(colleague)
        session.flush()
        colleague_id = str(colleague.id)
    mine = scenario.deal("Mine", amount=50_000, owner_id=str(scenario.user_id))
    scenario.deal("Theirs", amount=90_000, owner_id=colleague_id)
    scenario.clock.advance(20)
    scenario.service.refresh_organization(scenario.organization_id)
    response = scenario.api.get("/api/v1/ai/priorities")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data and {c["entity_id"] for c in data} == {mine["id"]}
    assert [c["expected_value"] for c in data] == sorted((c["expected_value"] for c in data), reverse=True)


def test_acceptance_rate_per_type(scenario: Scenario) -> None:
    first = scenario.deal("One", amount=5000)
    second = scenario.deal("Two", amount=5000)
    scenario.clock.advance(20)
    one = scenario.card("deal", first["id"], "deal_no_touch")
    two = scenario.card("deal", second["id"], "deal_no_touch")
    scenario.feedback(one["id"], "helpful")
    scenario.feedback(one["id"], "done")
    scenario.feedback(two["id"], "dismissed")
    rows = {r["type"]: r for r in scenario.api.get("/api/v1/ai/recommendations/acceptance").json()["data"]}
    call = rows["schedule_call"]
    assert (call["accepted"], call["rejected"], call["acceptance_rate"]) == (2, 1, pytest.approx(2 / 3, rel=1e-3))
    assert call["feedback"] == {"helpful": 1, "done": 1, "dismissed": 1} and call["cards"] == 2


def test_a_refresh_updates_cards_rather_than_duplicating_them(scenario: Scenario) -> None:
    scenario.deal("Stale", amount=5000)
    scenario.clock.advance(20)
    first = scenario.service.refresh_organization(scenario.organization_id)
    scenario.clock.advance(1)
    second = scenario.service.refresh_organization(scenario.organization_id)
    assert first.created >= 1 and second.created == 0 and second.updated == first.created


def test_another_organizations_ids_are_not_found(scenario: Scenario, make_tenant, runtime) -> None:  # type: ignore[no-untyped-def]
    deal = scenario.deal("Secret", amount=5000)
    scenario.clock.advance(20)
    card = scenario.card("deal", deal["id"], "deal_no_touch")
    other = make_tenant("Other")
    service = RecommendationService(runtime, clock=scenario.clock)
    client = TestClient(create_recommendations_app(service), headers={"Authorization": f"Bearer {other.org.api_key}"})
    base = "/api/v1/ai/recommendations"
    responses = [
        client.get(f"{base}/deal/{deal['id']}"),
        client.get(f"{base}/{card['id']}/explain"),
        client.post(f"{base}/{card['id']}/apply"),
        client.post(f"{base}/{card['id']}/feedback", json={"feedback": "helpful"}),
    ]
    assert [r.status_code for r in responses] == [404, 404, 404, 404]
    assert all(r.json()["error"]["code"] == "not_found" for r in responses)
    assert client.get("/api/v1/ai/priorities").json()["data"] == []
    assert pending_actions(scenario) == 0


def test_the_feature_switch_answers_503(scenario: Scenario, settings: Settings, db) -> None:  # type: ignore[no-untyped-def]
    scenario.runtime = Runtime(settings.model_copy(update={"ai_recommendations_enabled": False}), db=db)
    response = scenario.api.get("/api/v1/ai/priorities")
    assert response.status_code == 503 and response.json()["error"]["code"] == "feature_disabled"
