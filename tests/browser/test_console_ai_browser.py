"""AI on the console's pages in real headless Chromium: next-best-action cards on record pages
and Today (apply then approve in the queue, explain with the language model up and down,
helpful / snooze / dismiss), the churn-risk card of a customer, and agents started from a record
or with a question, their progress updating live and their proposals in the approval queue.

The LLM is the scripted OpenAI-compatible server; the CRM a real Postgres seeded through the API.
Screenshots: .okyaku/screenshots/3x-*.png."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from okyaku.db import Database
from okyaku.db.models import Activity
from okyaku.llm import LLMConfig, LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.recommendations.models import Recommendation
from okyaku.tenancy import create_organization
from tests.browser.conftest import (
    ConsoleWorld,
    accessible_at_both_widths,
    api_client,
    axe_violations,
    check_accessible,
    console_runtime,
    console_server,
    laptop_tab,
    shot,
)
from tests.browser.test_console_browser import sign_in
from tests.conftest import STAGES
from tests.support.fixtures import llm_settings_for
from tests.support.hashing_embedder import HashingEmbedder
from tests.support.openai_server import Reply, ScriptedOpenAIServer


class World(ConsoleWorld):
    def card(self, deal_or_contact: str, rule: str) -> Recommendation:
        with self.runtime.db.organization_scope(self.ours.organization_id) as session:
            found = session.scalar(
                select(Recommendation).where(
                    Recommendation.entity_id == uuid.UUID(self.ids[deal_or_contact]), Recommendation.rule == rule
                )
            )
            assert found is not None, (deal_or_contact, rule)
            return found


def seed(client: TestClient, user_id: str) -> dict[str, str]:
    """Records whose facts call for actions today: a deal past its close date with an overdue task,
    deals in a proposal stage with no proposal sent, a lead, a customer."""
    pipeline = client.post("/api/v1/pipelines", json={"name": "Sales", "stages": STAGES, "is_default": True}).json()
    stages = {s["name"]: s["id"] for s in pipeline["stages"]}

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(f"/api/v1/{path}", json=body)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    aurora = post("companies", {"name": "Aurora Optics", "industry": "Optics"})
    vera = post(
        "contacts",
        {"first_name": "Vera", "last_name": "Rubin", "email": "vera@aurora.example", "company_id": aurora["id"]},
    )
    tom = post("contacts", {"first_name": "Tom", "last_name": "Baker", "email": "tom@northwind.example"})
    lena = post(
        "contacts",
        {"first_name": "Lena", "last_name": "Ortiz", "lifecycle_stage": "lead", "lead_status": "new"},
    )
    carla = post(
        "contacts",
        {"first_name": "Carla", "last_name": "Mendes", "lifecycle_stage": "customer", "email": "carla@c.example"},
    )
    late = (date.today() - timedelta(days=12)).isoformat()
    telescopes = post(
        "deals",
        {
            "name": "Aurora telescopes",
            "amount": "48000",
            "stage_id": stages["Qualification"],
            "company_id": aurora["id"],
            "contact_id": vera["id"],
            "owner_id": user_id,
            "expected_close_date": late,
        },
    )
    overdue = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    post("tasks", {"title": "Send the spec sheet", "due_date": overdue, "deal_id": telescopes["id"]})
    fleet = post(
        "deals",
        {
            "name": "Northwind fleet tracking",
            "amount": "120000",
            "stage_id": stages["Proposal"],
            "contact_id": tom["id"],
            "owner_id": user_id,
        },
    )
    mirrors = post(
        "deals",
        {
            "name": "Mirror refit",
            "amount": "30000",
            "stage_id": stages["Qualification"],
            "contact_id": vera["id"],
            "owner_id": user_id,
            "expected_close_date": late,
        },
    )
    return {
        "aurora": aurora["id"],
        "vera": vera["id"],
        "tom": tom["id"],
        "lena": lena["id"],
        "carla": carla["id"],
        "telescopes": telescopes["id"],
        "fleet": fleet["id"],
        "mirrors": mirrors["id"],
    }


@pytest.fixture(scope="module")
def world(pg: LocalDatabase, db: Database) -> Iterator[World]:
    runtime = console_runtime(pg, db)
    ours = create_organization(db, f"AI cards {uuid.uuid4().hex[:6]}", "rep@cards.example")
    with api_client(runtime, ours.api_key) as client:
        ids = seed(client, str(ours.user_id))
    with ScriptedOpenAIServer() as openai:
        # A high breaker threshold: the "language model down" test must not open it for the agent tests.
        llm = LLMGateway(LLMConfig.from_settings(llm_settings_for(openai.base_url, llm_breaker_failure_threshold=1000)))
        with console_server(runtime, llm, "ai-browser-test-secret", embedder=HashingEmbedder()) as (url, services):
            yield World(url, services, runtime, openai, ours, ids)
        llm.close()


@pytest.fixture
def page(browser: Any, world: World) -> Iterator[Any]:
    with laptop_tab(browser, world.url) as tab:
        yield tab


def open_record(page: Any, path: str) -> None:
    """A record page, once htmx has swapped in its cards refreshed from the record's facts."""
    page.goto(path)
    fresh_cards(page)


def fresh_cards(page: Any) -> None:
    page.locator("#next-best-actions[data-fresh]").wait_for()


def card_on(page: Any, title_part: str) -> Any:
    return page.locator("article.rec").filter(has=page.get_by_role("heading", name=title_part))


def test_apply_a_card_then_approve_it_in_the_queue_and_the_deal_shows_the_email(
    page, world, screenshots, axe_source
) -> None:
    sign_in(page, world)
    chats_before = len(world.openai.requests_to("chat"))
    open_record(page, f"/console/deals/{world.ids['fleet']}")
    assert len(world.openai.requests_to("chat")) == chats_before  # a page render never asks the model
    cards = page.get_by_role("region", name="Next best actions")
    card = card_on(page, "Send the proposal for Northwind fleet tracking")
    assert card.count() == 1
    text = card.inner_text()
    assert "The deal is in Proposal" in text and "no outbound email about a proposal" in text  # reasoning
    assert "Expected value" in text and "Priority" in text
    assert "Drafts the email 'Proposal: Northwind fleet tracking' to the contact" in text  # what Apply does
    accessible_at_both_widths(page, axe_source, screenshots, "30-deal-cards")
    card.get_by_text("Facts behind it").click()
    assert "Proposal email found" in card.inner_text()

    card.get_by_role("button", name="Apply").click()
    page.wait_for_url("**applied=**")
    fresh_cards(page)
    result = cards.locator(".apply-result")
    result.wait_for()
    assert "Sent to the approval queue" in result.inner_text()
    assert card_on(page, "Send the proposal for Northwind fleet tracking").count() == 0  # applied: off the list
    shot(page, screenshots, "31-card-applied")
    result.get_by_role("link", name="Open it in the queue").click()
    page.wait_for_url("**/console/approvals?status=pending*")
    stored = world.card("fleet", "proposal_not_sent")
    action = page.locator(f"#action-{stored.pending_action_id}")
    assert "Proposal: Northwind fleet tracking" in action.get_by_role("table", name="Field changes").inner_text()
    action.get_by_role("button", name="Approve", exact=True).click()
    page.wait_for_url("**notice=approved")

    open_record(page, f"/console/deals/{world.ids['fleet']}")
    timeline = page.get_by_role("region", name="Activities")
    assert "Proposal: Northwind fleet tracking" in timeline.inner_text()  # the record changed
    with world.runtime.db.organization_scope(world.ours.organization_id) as session:
        sent = session.scalars(select(Activity).where(Activity.deal_id == uuid.UUID(world.ids["fleet"]))).all()
        assert [(a.type, a.direction, a.subject) for a in sent] == [
            ("email", "outbound", "Proposal: Northwind fleet tracking")
        ]


def test_explain_with_the_language_model_up_then_down(page, world, screenshots, axe_source) -> None:
    world.openai.script(
        Reply.json_object(
            {
                "reasoning": "The expected close date has passed while the deal is still open.",
                "talking_points": ["Ask whether the budget still holds.", "Agree on a new close date."],
                "draft_email": {"subject": "Checking in on the timeline", "body": "Hi Vera, is the timeline right?"},
                "cited_facts": ["expected_close_date", "days_past_close_date"],
            }
        )
    )
    sign_in(page, world)
    open_record(page, f"/console/deals/{world.ids['telescopes']}")
    card = card_on(page, "Confirm the timeline of Aurora telescopes")
    card.get_by_role("link", name="Explain").click()
    explanation = card.locator(".explanation")
    explanation.wait_for()
    assert "Written by the language model" in explanation.inner_text()
    assert "The expected close date has passed while the deal is still open." in explanation.inner_text()
    assert explanation.locator("ul.talking-points li").all_inner_texts() == [
        "Ask whether the budget still holds.",
        "Agree on a new close date.",
    ]
    assert explanation.locator(".draft-subject").inner_text() == "Checking in on the timeline"
    assert page.url.endswith(f"/console/deals/{world.ids['telescopes']}")  # explained in place
    accessible_at_both_widths(page, axe_source, screenshots, "32-card-explained-by-the-model", fresh=False)

    world.openai.fault = Reply.error(503, "model is loading")  # the language model is down
    try:
        open_record(page, f"/console/deals/{world.ids['telescopes']}")
        card = card_on(page, "Confirm the timeline of Aurora telescopes")
        card.get_by_role("link", name="Explain").click()
        explanation = card.locator(".explanation")
        explanation.wait_for()
        note = explanation.locator(".template-note")
        assert "Template" in note.inner_text() and "did not answer" in note.inner_text()
        assert "Written by the language model" not in explanation.inner_text()
        reasoning = explanation.locator(".explain-reasoning").inner_text()
        assert "The expected close date (" in reasoning and "passed 12 days ago" in reasoning  # from the facts
        shot(page, screenshots, "33-card-explained-by-the-template")
        # Without JavaScript, Explain is a page of its own.
        stored = world.card("telescopes", "deal_past_close_date")
        page.goto(f"/console/recommendations/{stored.id}/explain?next=/console/deals/{world.ids['telescopes']}")
        assert page.get_by_role("heading", level=1).inner_text().startswith("Confirm the timeline")
        assert page.locator(".template-note").is_visible()
        accessible_at_both_widths(page, axe_source, screenshots, "34-explain-page")
    finally:
        world.openai.fault = None


def test_helpful_snooze_and_dismiss_change_what_is_shown(page, world, screenshots, axe_source) -> None:
    service = world.services.recommendations
    assert service is not None
    service.refresh_organization(world.ours.organization_id)  # the daily schedule: Today lists stored cards
    sign_in(page, world)
    today = page.get_by_role("region", name="Daily priorities")
    assert card_on(page, "Confirm the timeline of Mirror refit").count() == 1  # Mirror refit is mine
    accessible_at_both_widths(page, axe_source, screenshots, "35-today-cards")

    open_record(page, f"/console/deals/{world.ids['mirrors']}")
    card = card_on(page, "Confirm the timeline of Mirror refit")
    before = service.for_entity(
        world.ours.organization_id, "deal", uuid.UUID(world.ids["mirrors"]), world.ours.user_id
    )["data"][0]["expected_value"]
    card.get_by_role("button", name=re.compile(r"^Helpful")).click()
    page.wait_for_url("**card_feedback=helpful**")
    fresh_cards(page)
    notice = page.locator(".feedback-notice")
    notice.wait_for()
    assert "rank higher for you" in notice.inner_text()
    card = card_on(page, "Confirm the timeline of Mirror refit")
    assert "1 helpful or acted on, 0 not" in card.locator(".your-feedback").inner_text()
    after = world.card("mirrors", "deal_past_close_date")
    assert after.status == "open"
    shown_value = card.locator(".rec-meta strong").inner_text()
    assert float(shown_value.replace(",", "")) > before  # the helpful type ranks higher

    back_on = (date.today() + timedelta(days=5)).isoformat()
    card.get_by_label("Snooze until").fill(back_on)
    card.get_by_role("button", name="Snooze").click()
    page.wait_for_url("**card_feedback=snoozed**")
    fresh_cards(page)
    page.locator(".feedback-notice", has_text=f"comes back on {back_on}").wait_for()
    assert card_on(page, "Confirm the timeline of Mirror refit").count() == 0
    snoozed = world.card("mirrors", "deal_past_close_date")
    assert snoozed.status == "snoozed" and snoozed.hidden_until.date().isoformat() == back_on
    page.goto("/console/today")
    assert card_on(page, "Confirm the timeline of Mirror refit").count() == 0  # off Today as well

    open_record(page, f"/console/contacts/{world.ids['vera']}")  # a contact's cards include its deals'
    card = card_on(page, "Confirm the timeline of Aurora telescopes")
    assert card.get_by_role("link", name="Aurora telescopes", exact=True).is_visible()  # which record it is about
    card.get_by_role("button", name="Dismiss").click()
    page.wait_for_url("**card_feedback=dismissed**")
    fresh_cards(page)
    page.locator(".feedback-notice", has_text="Dismissed").wait_for()
    assert card_on(page, "Confirm the timeline of Aurora telescopes").count() == 0
    assert world.card("telescopes", "deal_past_close_date").status == "dismissed"
    assert today is not None
    shot(page, screenshots, "36-card-dismissed")


def test_the_churn_risk_card_of_a_customer_and_a_companys_cards(page, world, screenshots, axe_source) -> None:
    sign_in(page, world)
    open_record(page, f"/console/contacts/{world.ids['carla']}")
    churn = page.get_by_role("region", name="Churn risk")
    assert "/ 100" in churn.inner_text() and "risk" in churn.locator(".churn-level").inner_text()
    factors = churn.get_by_role("table", name="Churn factors").locator("tbody tr")
    assert factors.count() >= 1 and factors.first.locator("th").inner_text() != ""
    assert page.get_by_role("region", name="Ask an agent").count() == 0  # a customer is no lead to qualify
    accessible_at_both_widths(page, axe_source, screenshots, "37-customer-churn-card")
    open_record(page, f"/console/contacts/{world.ids['lena']}")  # a lead has no churn card
    assert page.get_by_role("region", name="Churn risk").count() == 0

    open_record(page, f"/console/companies/{world.ids['aurora']}")  # a company's cards: its deals' and people's
    card = card_on(page, "1 overdue task(s) on Aurora telescopes")
    assert "Moves the due date of the task 'Send the spec sheet' to tomorrow." in card.inner_text()
    assert page.get_by_role("region", name="Ask an agent").count() == 0  # no agent works on a company
    accessible_at_both_widths(page, axe_source, screenshots, "37-company-cards")


def wait_until_finished(page: Any) -> str:
    progress = page.locator(".run-progress")
    progress.filter(has_text="Finished").wait_for(timeout=20_000)
    return str(progress.inner_text())


def test_start_each_agent_from_its_page_and_see_its_proposals(page, world, screenshots, axe_source) -> None:
    ids = world.ids
    sign_in(page, world)

    # The first model turn is slow, so the run page shows it running and then updates itself.
    world.openai.script(
        Reply.tool_call(
            "update_contact",
            {"contact_id": ids["lena"], "lead_status": "qualified", "reasoning": "Asked for a demo twice."},
            delay_s=1.5,
        ),
        Reply.text("Lena Ortiz is a qualified lead; I proposed the status change for review."),
    )
    open_record(page, f"/console/contacts/{ids['lena']}")
    page.get_by_role("region", name="Ask an agent").get_by_role("button", name="Qualify this lead").click()
    page.wait_for_url("**/console/runs/*")
    run_url = page.url
    assert page.locator(".run-progress").inner_text().startswith(("Queued", "Running"))
    assert "Finished" in wait_until_finished(page) and page.url == run_url  # updated in place
    steps = page.get_by_role("region", name="Step log")
    assert "update_contact" in steps.inner_text()
    [proposal] = page.locator("article.action").all()
    assert "qualified" in proposal.get_by_role("table", name="Field changes").inner_text()
    accessible_at_both_widths(page, axe_source, screenshots, "38-agent-run-from-a-contact", fresh=False)
    action_id = proposal.get_attribute("id")
    page.goto("/console/approvals")
    assert page.locator(f"#{action_id}").is_visible()  # its proposal waits in the queue

    world.openai.script(
        Reply.tool_call(
            "update_deal",
            {"deal_id": ids["mirrors"], "stage": "Negotiation", "reasoning": "Terms are being discussed."},
        ),
        Reply.text("The deal is ready for negotiation; I proposed the stage change."),
    )
    open_record(page, f"/console/deals/{ids['mirrors']}")
    page.get_by_role("button", name="Review this deal").click()
    page.wait_for_url("**/console/runs/*")
    wait_until_finished(page)
    [proposal] = page.locator("article.action").all()
    assert "Negotiation" in proposal.get_by_role("table", name="Field changes").inner_text()
    page.goto("/console/approvals")
    assert page.locator(f"#{proposal.get_attribute('id')}").is_visible()

    question = "Which open deal is the largest?"
    world.openai.script(
        Reply.tool_call("search_records", {"entity_type": "deal", "sort": "-amount", "limit": 5}),
        Reply.text("The largest open deal is Northwind fleet tracking."),
    )
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agent runs").click()
    page.wait_for_url("**/console/runs")
    check_accessible(page)
    assert axe_violations(page, axe_source) == []
    page.get_by_label("Question about your CRM data").fill(question)
    page.get_by_role("button", name="Ask the data analyst").click()
    page.wait_for_url("**/console/runs/*")
    wait_until_finished(page)
    summary = page.get_by_role("region", name="Summary")
    assert question in summary.inner_text()
    assert "The largest open deal is Northwind fleet tracking." in summary.locator("p.answer").inner_text()
    chat = [r for r in world.openai.requests_to("chat") if question in str(r.messages)]
    assert chat, "the analyst's question reached the model"
    shot(page, screenshots, "39-data-analyst-run")
