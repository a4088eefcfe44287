"""Each rule fires exactly when its facts hold, on a real Postgres, through the HTTP API."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.recommendations_support import Scenario


def test_no_touch_on_an_open_deal(scenario: Scenario) -> None:
    buyer = scenario.contact("Ann", email="ann@buyer.example")
    quiet = scenario.deal("Quiet deal", amount=40_000, contact_id=buyer["id"])
    busy = scenario.deal("Busy deal", amount=40_000)
    scenario.clock.advance(20)
    scenario.activity(3, deal_id=busy["id"])
    assert "deal_no_touch" in scenario.rules("deal", quiet["id"])
    assert "deal_no_touch" not in scenario.rules("deal", busy["id"])
    card = scenario.card("deal", quiet["id"], "deal_no_touch")
    assert card["type"] == "schedule_call"
    assert card["facts"]["days_since_last_touch"] == 20 and card["facts"]["threshold_days"] == 14
    # A call with the deal's contact counts as a touch on the deal too.
    scenario.activity(1, contact_id=buyer["id"])
    assert "deal_no_touch" not in scenario.rules("deal", quiet["id"])


def test_a_fresh_deal_is_not_stale(scenario: Scenario) -> None:
    deal = scenario.deal("Fresh", amount=1000)
    scenario.clock.advance(13)
    assert "deal_no_touch" not in scenario.rules("deal", deal["id"])


def test_past_its_expected_close_date(scenario: Scenario) -> None:
    today = scenario.clock.now.date()
    late = scenario.deal("Late", expected_close_date=(today + timedelta(days=3)).isoformat())
    on_time = scenario.deal("On time", expected_close_date=(today + timedelta(days=30)).isoformat())
    scenario.clock.advance(10)
    assert "deal_past_close_date" in scenario.rules("deal", late["id"])
    assert "deal_past_close_date" not in scenario.rules("deal", on_time["id"])
    card = scenario.card("deal", late["id"], "deal_past_close_date")
    assert card["type"] == "follow_up" and card["facts"]["days_past_close_date"] == 7


def test_stalled_against_the_default_when_the_stage_has_no_history(scenario: Scenario) -> None:
    deal = scenario.deal("Slow", amount=5000)
    scenario.clock.advance(40)
    assert "deal_stage_stalled" not in scenario.rules("deal", deal["id"])  # limit 1.5 x 30 = 45 days
    scenario.clock.advance(10)
    card = scenario.card("deal", deal["id"], "deal_stage_stalled")
    assert card["type"] == "update_deal_stage"
    assert card["facts"]["norm_source"] == "default" and card["facts"]["typical_days_in_stage"] == 30
    assert card["confidence"] == 0.5
    assert card["action"]["kind"] == "stage" and card["action"]["stage_name"] == "Proposal"


def test_stalled_against_the_organizations_own_stage_history(scenario: Scenario) -> None:
    """Five deals that left Qualification after about 4 days: a deal in it for 10 days is stalled
    (limit 6), one there for 5 is not, although the 30-day default would call neither."""
    for index in range(5):
        moved = scenario.deal(f"Past {index}")
        response = scenario.crm.patch(f"/api/v1/deals/{moved['id']}", json={"stage_id": scenario.stages["Proposal"]})
        assert response.status_code == 200, response.text
        scenario.backdate_history(moved["id"], "Qualification", 30 + 4 + index * 0.1)
        scenario.backdate_history(moved["id"], "Proposal", 30)
    slow = scenario.deal("Slow")
    quick = scenario.deal("Quick")
    scenario.backdate("deals", quick["id"], "stage_entered_at", -5)  # entered 5 days before the clock below
    scenario.clock.advance(10)
    card = scenario.card("deal", slow["id"], "deal_stage_stalled")
    assert card["facts"]["norm_source"] == "history"
    assert 4 <= card["facts"]["typical_days_in_stage"] <= 4.5
    assert "median of 5 past stays" in card["facts"]["typical_basis"]
    assert "deal_stage_stalled" not in scenario.rules("deal", quick["id"])


def test_proposal_stage_without_a_sent_proposal(scenario: Scenario) -> None:
    buyer = scenario.contact("Bo", email="bo@buyer.example")
    waiting = scenario.deal("Waiting", stage="Proposal", contact_id=buyer["id"])
    sent = scenario.deal("Sent", stage="Proposal", contact_id=buyer["id"])
    scenario.activity(0.5, type="email", direction="outbound", subject="Our proposal", deal_id=sent["id"])
    early = scenario.deal("Early", stage="Qualification")
    scenario.clock.advance(1)
    card = scenario.card("deal", waiting["id"], "proposal_not_sent")
    assert card["type"] == "send_proposal" and card["action"]["kind"] == "email"
    assert "proposal_not_sent" not in scenario.rules("deal", sent["id"])
    assert "proposal_not_sent" not in scenario.rules("deal", early["id"])


def test_overdue_tasks_on_deals_and_contacts(scenario: Scenario) -> None:
    deal = scenario.deal("With tasks")
    person = scenario.contact("Cy")
    scenario.task(-2, title="Send the contract", deal_id=deal["id"], contact_id=person["id"])
    scenario.task(-1, title="Done already", status="done", contact_id=person["id"])
    scenario.task(5, title="Not due yet", contact_id=person["id"])
    card = scenario.card("deal", deal["id"], "overdue_tasks")
    assert card["type"] == "follow_up" and card["facts"]["oldest_overdue_task"] == "Send the contract"
    assert card["facts"]["overdue_tasks"] == 1
    # The deal's task is the deal's card, not a second one on the contact; done and future ones never count.
    assert "overdue_tasks" not in scenario.rules("contact", person["id"])
    scenario.task(-3, title="Call back", contact_id=person["id"])
    assert scenario.card("contact", person["id"], "overdue_tasks")["facts"]["oldest_overdue_task"] == "Call back"


def test_hot_lead_without_owner_or_follow_up(scenario: Scenario) -> None:
    hot = scenario.contact("Hot", lifecycle_stage="lead")
    covered = scenario.contact("Covered", lifecycle_stage="lead", owner_id=str(scenario.user_id))
    scenario.task(3, title="Follow up", contact_id=covered["id"])
    warm = scenario.contact("Warm", lifecycle_stage="lead")
    customer = scenario.contact("Customer", lifecycle_stage="customer")
    for contact, score in ((hot, 85), (covered, 90), (warm, 55), (customer, 95)):
        scenario.score(contact["id"], "lead_score", score)
    card = scenario.card("contact", hot["id"], "hot_lead_unattended")
    assert card["type"] == "create_task" and card["facts"]["lead_score"] == 85
    assert card["facts"]["has_owner"] is False and card["confidence"] == 0.8
    for other in (covered, warm, customer):
        assert "hot_lead_unattended" not in scenario.rules("contact", other["id"])


def test_hot_lead_with_no_recent_touch(scenario: Scenario) -> None:
    silent = scenario.contact("Silent", lifecycle_stage="mql", email="s@x.example")
    talked = scenario.contact("Talked", lifecycle_stage="mql")
    scenario.score(silent["id"], "lead_score", 80)
    scenario.score(talked["id"], "lead_score", 80)
    scenario.clock.advance(10)
    scenario.activity(2, contact_id=talked["id"])
    card = scenario.card("contact", silent["id"], "hot_lead_no_touch")
    assert card["type"] == "send_email" and card["facts"]["days_since_last_touch"] == 10
    assert "hot_lead_no_touch" not in scenario.rules("contact", talked["id"])


def test_churn_risk_rising(scenario: Scenario) -> None:
    rising = scenario.contact("Rising", lifecycle_stage="customer")
    steady = scenario.contact("Steady", lifecycle_stage="customer")
    lead = scenario.contact("Lead", lifecycle_stage="lead")
    for contact, before, now in ((rising, 30, 55), (steady, 30, 35), (lead, 30, 70)):
        scenario.score(contact["id"], "churn_risk", before, days_ago=40)
        scenario.score(contact["id"], "churn_risk", now)
    card = scenario.card("contact", rising["id"], "churn_risk_rising")
    assert card["type"] == "schedule_call"
    assert (card["facts"]["churn_risk_before"], card["facts"]["churn_risk"]) == (30, 55)
    assert "churn_risk_rising" not in scenario.rules("contact", steady["id"])
    assert "churn_risk_rising" not in scenario.rules("contact", lead["id"])


def test_re_engage_contacts_gone_quiet(scenario: Scenario) -> None:
    quiet = scenario.contact("Quiet", email="q@x.example")
    once = scenario.contact("Once")
    with_deal = scenario.contact("Dealing")
    scenario.clock.advance(70)
    for contact in (quiet, with_deal):
        scenario.activity(69, contact_id=contact["id"])
        scenario.activity(65, contact_id=contact["id"])
    scenario.activity(65, contact_id=once["id"])
    scenario.deal("Open deal", contact_id=with_deal["id"])
    card = scenario.card("contact", quiet["id"], "re_engage_quiet")
    assert card["type"] == "re_engage" and card["facts"]["past_activities"] == 2
    assert card["action"]["kind"] == "email"
    assert "re_engage_quiet" not in scenario.rules("contact", once["id"])
    assert "re_engage_quiet" not in scenario.rules("contact", with_deal["id"])


def test_a_company_shows_the_cards_of_its_deals_and_contacts(scenario: Scenario) -> None:
    company = scenario.post("companies", {"name": "Acme"})
    person = scenario.contact("Dee", company_id=company["id"])
    deal = scenario.deal("Acme deal", company_id=company["id"])
    scenario.task(-1, title="Overdue", contact_id=person["id"])
    scenario.clock.advance(20)
    found = {(c["entity_type"], c["rule"]) for c in scenario.cards("company", company["id"])}
    assert {("contact", "overdue_tasks"), ("deal", "deal_no_touch")} <= found
    assert all(c["company_id"] == company["id"] for c in scenario.cards("company", company["id"]))
    assert deal["id"] in {c["entity_id"] for c in scenario.cards("company", company["id"])}
