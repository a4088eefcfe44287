"""Agent runs end ``completed`` only when the final answer is grounded in the tool results;
otherwise ``inconclusive`` with the reason, in the store, the API and the console.

The scripted OpenAI-compatible server gives exact replies (real HTTP, real SDK); the tools run
against the real Postgres with row-level security."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from okyaku.agents.schemas import RunRequest
from okyaku.agents.service import ExecutionView
from okyaku.console.services import ConsoleServices
from okyaku.tenancy import Principal
from tests.integration import test_agents_api as api_tests
from tests.integration import test_agents_runs as runs_tests
from tests.integration.test_agents_api import run
from tests.integration.test_agents_runs import make_crm, run_agent
from tests.integration.test_console import sign_in
from tests.support.openai_server import Reply, ScriptedOpenAIServer

# The fixtures of the agents tests, used here as there (the console's are in conftest.py).
clock, make_agents_client, agents = api_tests.clock, api_tests.make_agents_client, api_tests.agents
make_service, service = runs_tests.make_service, runs_tests.service

RAMBLING = (
    "As an AI sales assistant I think this lead is a great opportunity. Leads like this usually convert "
    "when they are followed up quickly, so reach out soon and keep the momentum going."
)


@pytest.fixture
def crm(tenant, pipeline) -> dict[str, Any]:
    return make_crm(tenant, pipeline)


def verification_of(view: ExecutionView) -> dict[str, Any]:
    assert view.execution.verification is not None
    return view.execution.verification


# --- the run loop --------------------------------------------------------------------------------


def test_a_model_that_never_calls_a_tool_is_nudged_once_then_ends_inconclusive(
    service, tenant, crm, openai_server: ScriptedOpenAIServer
):
    openai_server.script(Reply.text(RAMBLING), Reply.text(RAMBLING))
    view = run_agent(service, tenant, "lead_qualifier", {"contact_id": crm["contact"]["id"]})

    execution = view.execution
    assert (execution.status, execution.stop_reason) == ("inconclusive", "no_tool_calls")
    assert execution.answer == RAMBLING  # kept, marked unverified
    assert verification_of(view)["verified"] is False and verification_of(view)["reason"] == "no_tool_calls"
    # Two model turns of its ten: the nudge, then the end, not the whole iteration budget.
    assert execution.iterations == 2 and len(openai_server.requests_to("chat")) == 2
    nudge = openai_server.requests_to("chat")[1].messages[-1]
    assert nudge["role"] == "user" and "You have not called any tool" in nudge["content"]
    assert [s.kind for s in view.steps] == ["tool", "model", "model", "check"]  # the preload is the runner's
    assert view.steps[-1].error["code"] == "no_tool_calls"


def test_an_empty_answer_is_asked_for_once_then_ends_inconclusive(service, tenant, crm, openai_server):
    openai_server.script(Reply.tool_call("search_records", {"entity_type": "deal"}), Reply.text(""), Reply.text(" "))
    view = run_agent(service, tenant, "data_analyst", {})

    assert (view.execution.status, view.execution.stop_reason) == ("inconclusive", "empty_answer")
    assert view.execution.answer is None
    assert openai_server.requests_to("chat")[2].messages[-1]["content"] == "Give your final answer now, as text."


def test_a_grounded_answer_after_a_tool_call_is_completed(service, tenant, crm, openai_server):
    deal_id = crm["deal"]["id"]
    openai_server.script(
        Reply.tool_call("get_record", {"entity_type": "deal", "id": deal_id}),
        Reply.text("Aurora telescopes (Aurora Optics, with Vera Rubin) is worth 48k, in Qualification."),
    )
    view = run_agent(service, tenant, "data_analyst", {})

    assert (view.execution.status, view.execution.stop_reason) == ("completed", "final_answer")
    verification = verification_of(view)
    assert verification["verified"] is True and verification["reason"] is None
    assert {"48k", "Aurora Optics", "Vera Rubin"} <= set(verification["cited"])
    assert view.steps[-1].kind == "check" and view.steps[-1].result["verified"] is True


def test_an_answer_that_invents_a_number_is_inconclusive_and_says_which(service, tenant, crm, openai_server):
    deal_id = crm["deal"]["id"]
    openai_server.script(
        Reply.tool_call("get_record", {"entity_type": "deal", "id": deal_id}),
        Reply.text("Aurora telescopes is worth 52,000 and is 80% likely to close."),
    )
    view = run_agent(service, tenant, "data_analyst", {})

    assert (view.execution.status, view.execution.stop_reason) == ("inconclusive", "ungrounded_numbers")
    assert verification_of(view)["ungrounded_numbers"] == ["52,000", "80%"]
    assert "52,000" in verification_of(view)["message"]


def test_an_answer_naming_records_the_tools_did_not_return_is_inconclusive(service, tenant, crm, openai_server):
    created = tenant.client.post("/api/v1/companies", json={"name": "Initech"})
    assert created.status_code == 201, created.text
    deal_id = crm["deal"]["id"]
    openai_server.script(
        Reply.tool_call("get_record", {"entity_type": "deal", "id": deal_id}),
        # initech is a company of the organization (found however it is written); Globex is invented
        Reply.text("Aurora telescopes is worth 48,000; next are initech and Globex Industries."),
    )
    view = run_agent(service, tenant, "data_analyst", {})

    assert (view.execution.status, view.execution.stop_reason) == ("inconclusive", "ungrounded_names")
    assert set(verification_of(view)["ungrounded_names"]) == {"Initech", "Globex Industries"}


def test_an_inconclusive_run_leaves_its_proposals_for_review(service, tenant, crm, openai_server):
    deal_id = crm["deal"]["id"]
    arguments = {"deal_id": deal_id, "stage": "Proposal", "reasoning": "Budget approved for Q3."}
    openai_server.script(Reply.tool_call("update_deal", arguments), Reply.text("Moved it to Proposal: 75,000 now."))
    view = run_agent(service, tenant, "deal_assistant", {"deal_id": deal_id})

    assert (view.execution.status, view.execution.stop_reason) == ("inconclusive", "ungrounded_numbers")
    [action] = view.pending_actions
    assert (action.action, action.status) == ("update_deal", "pending")  # a person checks it anyway


# --- the API ---------------------------------------------------------------------------------------


def test_the_api_returns_an_inconclusive_run_with_its_reason(agents, openai_server, crm):
    openai_server.script(Reply.text(RAMBLING), Reply.text(RAMBLING))
    execution = run(agents, "lead_qualifier", {"contact_id": crm["contact"]["id"]})

    assert (execution["status"], execution["stop_reason"]) == ("inconclusive", "no_tool_calls")
    assert execution["answer"] == RAMBLING
    assert execution["verification"]["verified"] is False
    assert execution["verification"]["reason"] == "no_tool_calls"
    assert execution["steps"][-1]["kind"] == "check"

    listed = agents.get("/api/v1/ai/agents/executions", params={"status": "inconclusive"})
    assert listed.status_code == 200 and [e["id"] for e in listed.json()] == [execution["id"]]
    assert agents.get("/api/v1/ai/agents/executions", params={"status": "completed"}).json() == []


# --- the console -----------------------------------------------------------------------------------


def start(console_services: ConsoleServices, tenant, agent: str, context: dict[str, Any]) -> ExecutionView:
    principal = Principal(tenant.id, tenant.org.user_id, uuid.uuid4())
    execution = console_services.agents.start_run(principal, agent, RunRequest(context=context))
    assert console_services.agents.dispatcher.wait(timeout_s=30)
    return console_services.agents.execution(tenant.id, execution.id)


def test_the_console_shows_an_inconclusive_run_as_such(services, console, tenant, crm, openai_server):
    deal_id = crm["deal"]["id"]
    arguments = {"deal_id": deal_id, "stage": "Proposal", "reasoning": "Budget approved for Q3."}
    openai_server.script(Reply.tool_call("update_deal", arguments), Reply.text("Moved it to Proposal: 75,000 now."))
    unverified = start(services, tenant, "deal_assistant", {"deal_id": deal_id})
    openai_server.script(
        Reply.tool_call("get_record", {"entity_type": "deal", "id": deal_id}),
        Reply.text("Aurora telescopes is worth 48,000."),
    )
    verified = start(services, tenant, "data_analyst", {})
    assert (unverified.execution.status, verified.execution.status) == ("inconclusive", "completed")
    sign_in(console, tenant.org.api_key)

    page = console.get(f"/console/runs/{unverified.execution.id}")
    assert page.status_code == 200
    assert "Inconclusive" in page.text and "status-completed" not in page.text
    assert "ungrounded_numbers" in page.text and "75,000" in page.text
    assert "unverified" in page.text and "checked against the tool results" not in page.text
    assert "Proposed changes" in page.text  # still there to approve

    page = console.get(f"/console/runs/{verified.execution.id}")
    assert "checked against the tool results" in page.text and "Inconclusive" not in page.text

    listing = console.get("/console/runs").text
    assert listing.count("Inconclusive") == 1 and "status-completed" in listing
