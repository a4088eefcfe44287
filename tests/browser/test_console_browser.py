"""The web console in real headless Chromium, served on a loopback port over a real Postgres,
with proposals made by real agent runs against the scripted OpenAI-compatible server.

Sign in, dashboard, search (keyword and semantic), record pages with their cards, the approval
queue (approve, edit then approve, reject, the stale-record conflict), agent runs, sign out; a
forged cross-site form refused; another organization's ids as 404 pages. Screenshots of each
page: .okyaku/screenshots/."""

from __future__ import annotations

import http.server
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from okyaku.agents.schemas import RunRequest
from okyaku.console.services import ConsoleServices
from okyaku.crm.schemas import DealUpdate
from okyaku.db import Database
from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.llm import LLMConfig, LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.runtime import Runtime
from okyaku.tenancy import NewOrganization, Principal, create_organization
from tests.browser.conftest import (  # noqa: F401  (LAPTOP, PHONE, UNLABELLED, ...: other modules import them from here)
    LAPTOP,
    PHONE,
    UNLABELLED,
    api_client,
    at_phone_width,
    check_accessible,
    console_runtime,
    console_server,
    fits_the_viewport,
    laptop_tab,
    shot,
    sign_in_with,
)
from tests.conftest import STAGES, free_port
from tests.support.fixtures import llm_settings_for
from tests.support.openai_server import Reply, ScriptedOpenAIServer


@dataclass
class World:
    url: str
    services: ConsoleServices
    runtime: Runtime
    openai: ScriptedOpenAIServer
    ours: NewOrganization
    theirs: NewOrganization
    ids: dict[str, str] = field(default_factory=dict)
    their_ids: dict[str, str] = field(default_factory=dict)

    def propose(
        self, tool: str, arguments: dict[str, Any], context: dict[str, Any], agent: str = "deal_assistant"
    ) -> Any:
        """An agent run whose (scripted) model calls one write tool: one pending action."""
        self.openai.script(Reply.tool_call(tool, arguments), Reply.text("I proposed one change for review."))
        principal = Principal(self.ours.organization_id, self.ours.user_id, uuid.uuid4())
        execution = self.services.agents.start_run(principal, agent, RunRequest(context=context))
        assert self.services.agents.dispatcher.wait(timeout_s=30)
        view = self.services.agents.execution(self.ours.organization_id, execution.id)
        assert view.execution.status == "completed", view.execution.error
        [action] = view.pending_actions
        return action


def seed(client: TestClient, *, prefix: str = "") -> dict[str, str]:
    """A small CRM through the public API: two companies, people, open and closed deals, activities."""
    pipeline = client.post("/api/v1/pipelines", json={"name": "Sales", "stages": STAGES, "is_default": True}).json()
    stages = {s["name"]: s["id"] for s in pipeline["stages"]}
    aurora = client.post(
        "/api/v1/companies", json={"name": f"{prefix}Aurora Optics", "industry": "Optics", "country": "Chile"}
    ).json()
    northwind = client.post(
        "/api/v1/companies",
        json={"name": f"{prefix}Northwind Freight", "industry": "Logistics", "description": "Regional trucking fleet"},
    ).json()
    vera = client.post(
        "/api/v1/contacts",
        json={
            "first_name": "Vera",
            "last_name": "Rubin",
            "email": f"{prefix.lower().strip()}vera@aurora.example",
            "job_title": "Head of Procurement",
            "company_id": aurora["id"],
            "lead_status": "open",
            "source": "webinar",
        },
    ).json()
    tom = client.post(
        "/api/v1/contacts",
        json={"first_name": "Tom", "last_name": "Baker", "company_id": northwind["id"], "lead_status": "new"},
    ).json()
    soon = (date.today() + timedelta(days=40)).isoformat()
    telescopes = client.post(
        "/api/v1/deals",
        json={
            "name": f"{prefix}Aurora telescopes",
            "amount": "48000",
            "stage_id": stages["Qualification"],
            "company_id": aurora["id"],
            "contact_id": vera["id"],
            "expected_close_date": soon,
        },
    ).json()
    fleet = client.post(
        "/api/v1/deals",
        json={
            "name": f"{prefix}Northwind fleet tracking",
            "amount": "120000",
            "stage_id": stages["Proposal"],
            "company_id": northwind["id"],
            "contact_id": tom["id"],
            "expected_close_date": soon,
        },
    ).json()
    lenses = client.post(
        "/api/v1/deals",
        json={"name": f"{prefix}Aurora lens renewal", "amount": "15000", "stage_id": stages["Proposal"]},
    ).json()
    client.post("/api/v1/deals", json={"name": "Mirrors", "amount": "9000", "stage_id": stages["Closed Won"]})
    client.post("/api/v1/deals", json={"name": "Pilot", "amount": "5000", "stage_id": stages["Closed Lost"]})
    client.post(
        "/api/v1/activities",
        json={
            "type": "call",
            "subject": "Discovery call",
            "body": "Budget approved for Q3.",
            "deal_id": telescopes["id"],
        },
    )
    client.post(
        "/api/v1/activities",
        json={
            "type": "note",
            "subject": "Route planning",
            "body": "Wants to track every lorry in real time.",
            "contact_id": tom["id"],
        },
    )
    return {
        "pipeline": pipeline["id"],
        "aurora": aurora["id"],
        "northwind": northwind["id"],
        "vera": vera["id"],
        "tom": tom["id"],
        "telescopes": telescopes["id"],
        "fleet": fleet["id"],
        "lenses": lenses["id"],
        **{f"stage:{name}": stage_id for name, stage_id in stages.items()},
    }


@pytest.fixture(scope="module")
def world(pg: LocalDatabase, db: Database) -> Iterator[World]:
    from okyaku.embeddings.llm_adapter import LocalModelEmbedder

    runtime = console_runtime(pg, db)
    ours = create_organization(db, f"Ours {uuid.uuid4().hex[:6]}", "reviewer@ours.example")
    theirs = create_organization(db, f"Theirs {uuid.uuid4().hex[:6]}", "admin@theirs.example")
    with api_client(runtime, ours.api_key) as client:
        ids = seed(client)
    with api_client(runtime, theirs.api_key) as client:
        their_ids = seed(client, prefix="Zephyr ")
    embedder = LocalModelEmbedder()
    EmbeddingIndexer(db, embedder).backfill(organization_ids=[ours.organization_id, theirs.organization_id])
    with ScriptedOpenAIServer() as openai:
        llm = LLMGateway(LLMConfig.from_settings(llm_settings_for(openai.base_url)))
        with console_server(runtime, llm, "browser-test-secret", embedder=embedder) as (url, services):
            yield World(url, services, runtime, openai, ours, theirs, ids, their_ids)
        llm.close()


@pytest.fixture
def page(browser: Any, world: World) -> Iterator[Any]:
    with laptop_tab(browser, world.url) as tab:
        yield tab


def sign_in(page: Any, world: World, api_key: str | None = None) -> None:
    sign_in_with(page, api_key or world.ours.api_key)
    assert page.get_by_role("heading", name="Today", level=1).is_visible()


def test_sign_in_see_the_dashboard_on_laptop_and_phone_then_sign_out(page, world, screenshots) -> None:
    response = page.goto("/")
    assert response.ok and page.url.endswith("/console/login?next=/console/today")
    shot(page, screenshots, "01-sign-in")
    page.get_by_label("API key").fill("oky_wrong")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That API key is not valid (or was revoked)."

    sign_in(page, world)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    page.wait_for_url("**/console")
    pipeline = page.get_by_role("region", name="Pipeline by stage: Sales")
    assert pipeline.get_by_role("img", name="Open pipeline amount by stage").is_visible()
    rows = pipeline.locator("tbody tr")
    assert rows.count() == len(STAGES)
    assert "Proposal" in rows.nth(1).inner_text() and "2" in rows.nth(1).inner_text()  # fleet + lenses
    win = page.get_by_role("region", name="Win rate")
    assert "50%" in win.inner_text() and "1 won / 2 closed" in win.inner_text()
    forecast = page.get_by_role("region", name="Forecast of won revenue by month")
    assert forecast.get_by_role("img").count() == 1 and forecast.locator("tbody tr").count() == 6
    assert "Zephyr" not in page.content()
    check_accessible(page)
    shot(page, screenshots, "02-dashboard")

    at_phone_width(page, screenshots, "02-dashboard")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login?signed_out=1")
    assert page.get_by_role("status").inner_text() == "You are signed out."
    page.goto("/console/deals")
    assert "/console/login" in page.url  # the old session is gone


def test_search_by_keyword_and_by_meaning_then_open_records(page, world, screenshots) -> None:
    sign_in(page, world)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Contacts").click()
    page.get_by_label("Search contacts").fill("ver rub")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url(lambda url: "q=ver" in url)
    links = page.locator("table.records tbody th a")
    assert links.all_inner_texts() == ["Vera Rubin"]
    shot(page, screenshots, "03-contacts-search")

    links.first.click()
    page.wait_for_url(f"**/console/contacts/{world.ids['vera']}")
    card = page.get_by_role("region", name="Lead score")
    assert "/ 100" in card.inner_text()
    assert card.get_by_role("table", name="Factors").locator("tbody tr").count() >= 1
    assert "Transparent rules" in card.inner_text() or "Learnt from" in card.inner_text()
    assert page.get_by_role("link", name="Aurora Optics").is_visible()
    check_accessible(page)
    shot(page, screenshots, "04-contact-record")
    at_phone_width(page, screenshots, "04-contact-record")

    # "where are our trucks" shares no word with any deal: keyword search finds nothing, search by
    # meaning finds the fleet-tracking deal of the freight company.
    page.goto("/console/deals?q=where+are+our+trucks")
    assert page.locator("table.records tbody th a").count() == 0
    page.goto("/console/deals")
    page.get_by_label("Search deals").fill("where are our trucks")
    page.get_by_label("Meaning (semantic)").check()
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**mode=semantic**")
    hits = page.locator("ol.hits li a")
    assert hits.first.inner_text() == "Northwind fleet tracking"
    assert "Zephyr" not in page.content()
    shot(page, screenshots, "05-deals-semantic-search")

    hits.first.click()
    page.wait_for_url(f"**/console/deals/{world.ids['fleet']}")
    forecast = page.get_by_role("region", name="Deal forecast")
    assert "Close probability" in forecast.inner_text() and "/ 100" in forecast.inner_text()
    assert page.get_by_role("region", name="Stage history").is_visible()
    shot(page, screenshots, "06-deal-record")

    page.goto(f"/console/companies/{world.ids['northwind']}")
    assert page.get_by_role("region", name="People").get_by_role("link", name="Tom Baker").is_visible()
    shot(page, screenshots, "07-company-record")


def test_ask_the_chat_panel_and_get_a_streamed_cited_answer(page, world, screenshots) -> None:
    plan = {
        "entity": "deals",
        "filters": [{"field": "status", "op": "eq", "value": "open"}],
        "fields": ["name", "company.name", "amount"],
        "order_by": [{"field": "amount", "direction": "desc"}],
    }
    world.openai.script(
        Reply.tool_call("query_crm", plan),
        Reply.stream(["Three deals are open; ", "the largest is ", "Northwind fleet tracking (120,000)."]),
    )
    sign_in(page, world)
    page.goto(f"/console/deals/{world.ids['telescopes']}")
    panel = page.get_by_role("complementary", name="Ask about your CRM")
    assert "this deal" in panel.inner_text()  # the page's record goes with the question
    panel.get_by_label("Question").fill("which deals still look promising?")  # one the parser leaves to the model
    panel.get_by_role("button", name="Ask").click()
    answer = panel.locator(".turn.assistant p.answer")
    answer.wait_for()
    assert answer.inner_text() == "Three deals are open; the largest is Northwind fleet tracking (120,000)."
    assert panel.locator(".turn.user").inner_text() == "which deals still look promising?"
    rows = panel.locator("table.chat-data tbody tr")
    assert rows.count() == 3 and "Northwind fleet tracking" in rows.first.inner_text()
    chips = panel.locator("a.chip")
    deal_chips = panel.locator('a.chip[href^="/console/deals/"]')
    expected = ["Aurora lens renewal", "Aurora telescopes", "Northwind fleet tracking"]
    assert sorted(deal_chips.all_inner_texts()) == expected
    assert "Zephyr" not in panel.inner_text()
    conversation = panel.locator("#chat-conversation").get_attribute("value")
    assert uuid.UUID(conversation)  # the next question continues this conversation
    [planning] = [r for r in world.openai.requests_to("chat") if r.body.get("tools")][-1:]
    assert "telescopes" in str(planning.messages).lower() or world.ids["telescopes"] in str(planning.messages)
    shot(page, screenshots, "08-chat-answer")
    chips.filter(has_text="Northwind fleet tracking").click()
    page.wait_for_url(f"**/console/deals/{world.ids['fleet']}")


def test_approve_edit_then_approve_reject_and_the_stale_record_conflict(page, world, screenshots) -> None:
    ids = world.ids
    reason = "The buyer asked for contract terms."
    stage_change = world.propose(
        "update_deal",
        {"deal_id": ids["telescopes"], "stage": "Negotiation", "reasoning": reason},
        {"deal_id": ids["telescopes"]},
    )
    amount_change = world.propose(
        "update_deal",
        {"deal_id": ids["fleet"], "amount": 130000, "reasoning": "They added ten trucks."},
        {"deal_id": ids["fleet"]},
    )
    qualify = world.propose(
        "update_contact",
        {"contact_id": ids["tom"], "lead_status": "qualified", "reasoning": "Budget and timeline confirmed."},
        {"contact_id": ids["tom"]},
        agent="lead_qualifier",
    )
    stale = world.propose(
        "update_deal",
        {"deal_id": ids["lenses"], "amount": 18000, "reasoning": "List price went up."},
        {"deal_id": ids["lenses"]},
    )
    sign_in(page, world)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Approvals").click()
    page.wait_for_url("**/console/approvals")
    queue = page.locator("article.action")
    assert queue.count() == 4
    card = page.locator(f"#action-{stage_change.id}")
    diff = card.get_by_role("table", name="Field changes")
    assert "Qualification" in diff.inner_text() and "Negotiation" in diff.inner_text()
    assert reason in card.inner_text()
    check_accessible(page)
    shot(page, screenshots, "09-approval-queue")
    at_phone_width(page, screenshots, "09-approval-queue")

    card.get_by_role("button", name="Approve", exact=True).click()
    page.wait_for_url("**notice=approved")
    assert "Approved: the change was applied." in page.get_by_role("status").first.inner_text()
    assert world.services.agents.approvals.get(world.ours.organization_id, stage_change.id).status == "approved"
    page.goto(f"/console/deals/{ids['telescopes']}")
    assert "Negotiation" in page.get_by_role("region", name="Details").inner_text()

    page.goto("/console/approvals")
    card = page.locator(f"#action-{amount_change.id}")
    card.get_by_text("Edit, then approve").click()
    card.get_by_label("amount").fill("125000")
    card.get_by_role("button", name="Approve with my edits").click()
    page.wait_for_url("**notice=edited")
    approved = world.services.agents.approvals.get(world.ours.organization_id, amount_change.id)
    assert approved.status == "approved" and approved.edited_fields["amount"]["approved"] == "125000"
    page.goto(f"/console/deals/{ids['fleet']}")
    assert "125,000 USD" in page.get_by_role("region", name="Details").inner_text()

    page.goto("/console/approvals")
    card = page.locator(f"#action-{qualify.id}")
    card.get_by_text("Reject").first.click()
    card.get_by_label("Reason").fill("Not before the security review.")
    card.get_by_role("button", name="Reject").click()
    page.wait_for_url("**notice=rejected")
    rejected = world.services.agents.approvals.get(world.ours.organization_id, qualify.id)
    assert rejected.status == "rejected" and rejected.rejection_reason == "Not before the security review."

    # Someone edits the deal after the agent proposed: approving must refuse, and say why.
    with world.runtime.transaction(world.ours.organization_id) as session:
        from okyaku.console.queries import SERVICES

        SERVICES["deal"].update(session, uuid.UUID(ids["lenses"]), DealUpdate(name="Aurora lens renewal 2027"))
    page.goto("/console/approvals")
    with page.expect_response(lambda r: r.request.method == "POST" and "/approve" in r.url) as answer:
        page.locator(f"#action-{stale.id}").get_by_role("button", name="Approve", exact=True).click()
    assert answer.value.status == 409
    alert = page.get_by_role("alert")
    assert "The record changed since the proposal" in alert.inner_text()
    assert "proposed this on version 1" in alert.inner_text() and "now at version 2" in alert.inner_text()
    assert "Nothing was applied" in alert.inner_text()
    with world.runtime.db.organization_scope(world.ours.organization_id) as session:
        from okyaku.db.models import Deal

        assert session.get(Deal, uuid.UUID(ids["lenses"])).amount == 15000  # nothing applied
    shot(page, screenshots, "10-approval-conflict")

    page.goto("/console/approvals?status=failed")
    assert page.locator(f"#action-{stale.id}").is_visible()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agent runs").click()
    page.wait_for_url("**/console/runs")
    runs = page.locator("table.records tbody tr")
    assert runs.count() >= 4 and "deal_assistant" in runs.first.inner_text()
    shot(page, screenshots, "11-agent-runs")
    runs.first.get_by_role("link").click()
    page.wait_for_url("**/console/runs/*")
    steps = page.get_by_role("region", name="Step log")
    assert "update_deal" in steps.inner_text() and "tool" in steps.inner_text()
    shot(page, screenshots, "12-agent-run")


class _EvilSite:
    """Another origin on the same host (so the Lax cookie is sent) serving a self-submitting form."""

    def __init__(self, target: str) -> None:
        html = (
            f'<html><body><form id="f" method="post" action="{target}">'
            '<input name="mode" value="edit"></form><script>document.getElementById("f").submit()</script>'
            "</body></html>"
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(html)))
                self.end_headers()
                self.wfile.write(html)

            def log_message(self, *_: Any) -> None:
                pass

        self.port = free_port()
        self.server = http.server.HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_a_forged_form_from_another_site_is_refused(page, world, screenshots) -> None:
    action = world.propose(
        "update_deal",
        {"deal_id": world.ids["telescopes"], "amount": 1, "reasoning": "A test of forged forms."},
        {"deal_id": world.ids["telescopes"]},
    )
    sign_in(page, world)
    evil = _EvilSite(f"{world.url}/console/approvals/{action.id}/approve")
    try:
        with page.expect_response(lambda r: "/approve" in r.url) as answer:
            page.goto(f"http://127.0.0.1:{evil.port}/")
        assert answer.value.status == 403
        assert "did not come from your console session" in page.content()
        shot(page, screenshots, "13-csrf-refused")
    finally:
        evil.close()
    assert world.services.agents.approvals.get(world.ours.organization_id, action.id).status == "pending"
    world.services.agents.approvals.reject(world.ours.organization_id, action.id, reviewer_id=None, reason="test")


def test_another_organizations_ids_are_404_pages(page, world, screenshots) -> None:
    sign_in(page, world)
    theirs = world.their_ids
    for path in (
        f"/console/contacts/{theirs['vera']}",
        f"/console/companies/{theirs['aurora']}",
        f"/console/deals/{theirs['fleet']}",
        f"/console/runs/{uuid.uuid4()}",
    ):
        response = page.goto(path)
        assert response.status == 404, path
        assert page.get_by_role("alert").inner_text() == "There is no such record in your organization."
        assert "Zephyr" not in page.content()
    shot(page, screenshots, "14-other-organization-404")
    page.goto("/console/search?q=Zephyr+Aurora")
    results = page.locator("ol.hits").inner_text()
    assert "Aurora Optics" in results and "Zephyr" not in results
