"""The agents API over HTTP: runs continue in the background (a thread, as locally), proposals
wait in the approval queue, and approving applies them through the CRM services exactly once."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from okyaku.agents.api import create_agents_app
from okyaku.db.models import Deal, DealStageHistory
from okyaku.llm import FeatureFlags
from tests.integration.test_agents_runs import make_crm
from tests.support.openai_server import Reply


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def crm(tenant, pipeline) -> dict[str, Any]:
    return make_crm(tenant, pipeline)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_agents_client(runtime, make_gateway, openai_server, clock):
    clients = []

    def make(api_key: str, *, features: FeatureFlags | None = None, base_url: str | None = None) -> TestClient:
        llm = make_gateway(base_url or openai_server.base_url, features=features)
        app = create_agents_app(runtime, llm, clock=clock)
        client = TestClient(app, headers={"Authorization": f"Bearer {api_key}"})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def agents(make_agents_client, tenant) -> TestClient:
    return make_agents_client(tenant.org.api_key)


def wait_for_runs(client: TestClient) -> None:
    assert client.app.state.agents.dispatcher.wait(timeout_s=30)


def run(client: TestClient, agent: str, context: dict[str, Any], **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/v1/ai/agents/{agent}/run", json={"context": context, **body})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert response.headers["Location"] == f"/api/v1/ai/agents/executions/{accepted['execution_id']}"
    wait_for_runs(client)
    execution = client.get(accepted["links"]["self"])
    assert execution.status_code == 200, execution.text
    return execution.json()  # type: ignore[no-any-return]


def propose(client, openai_server, tool: str, arguments: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """A deal_assistant run whose model proposes exactly one change; returns the pending action."""
    openai_server.script(Reply.tool_call(tool, arguments), Reply.text("Proposed."))
    execution = run(client, "deal_assistant", context)
    assert execution["status"] == "completed", execution
    [action] = execution["pending_actions"]
    return action  # type: ignore[no-any-return]


def stage_change(client, openai_server, crm, stage: str = "Negotiation", **extra: Any) -> dict[str, Any]:
    deal_id = crm["deal"]["id"]
    arguments = {"deal_id": deal_id, "stage": stage, "reasoning": "The buyer asked for contract terms.", **extra}
    return propose(client, openai_server, "update_deal", arguments, {"deal_id": deal_id})


def deal_events(publisher, deal_id: str) -> list[Any]:
    return [e for e in publisher.events if e.entity_type == "deal" and str(e.entity_id) == deal_id]


# --- running -----------------------------------------------------------------------------------------


def test_agents_are_listed_with_their_tools(agents):
    response = agents.get("/api/v1/ai/agents")
    assert response.status_code == 200
    by_name = {a["name"]: a for a in response.json()}
    assert set(by_name) == {"lead_qualifier", "deal_assistant", "data_analyst"}
    assert by_name["data_analyst"]["read_only"] is True
    assert all(not t["writes"] for t in by_name["data_analyst"]["tools"])
    tools = {t["name"]: t for t in by_name["deal_assistant"]["tools"]}
    assert tools["update_deal"]["writes"] and not tools["update_deal"]["low_risk"]
    assert tools["create_task"]["low_risk"] and not tools["draft_email"]["low_risk"]
    assert "reasoning" in tools["update_deal"]["parameters"]["required"]
    assert by_name["lead_qualifier"]["limits"]["max_iterations"] == 10


def test_a_run_is_accepted_at_once_and_shows_its_result(agents, openai_server, crm):
    openai_server.script(
        Reply.tool_call("get_lead_score", {"contact_id": crm["contact"]["id"]}),
        Reply.text("Warm lead: Vera Rubin, Head of Procurement."),
    )
    execution = run(agents, "lead_qualifier", {"contact_id": crm["contact"]["id"], "note": "met at the fair"})

    assert execution["status"] == "completed" and execution["answer"] == "Warm lead: Vera Rubin, Head of Procurement."
    assert execution["verification"]["verified"] is True and "Vera Rubin" in execution["verification"]["cited"]
    assert execution["context"]["note"] == "met at the fair"
    assert execution["task"].startswith("Qualify this lead")
    assert [s["kind"] for s in execution["steps"]] == ["tool", "model", "tool", "model", "check"]
    listed = agents.get("/api/v1/ai/agents/executions", params={"agent": "lead_qualifier"}).json()
    assert [e["id"] for e in listed] == [execution["id"]]


def test_run_requests_are_validated(agents, make_tenant, crm):
    assert agents.post("/api/v1/ai/agents/sales_wizard/run", json={}).status_code == 404
    missing = agents.post("/api/v1/ai/agents/lead_qualifier/run", json={"context": {}})
    assert missing.status_code == 422
    assert missing.json()["error"]["details"][0]["field"] == "context.contact_id"
    stranger = make_tenant("Stranger")
    foreign = make_agents_client_for(agents, stranger)
    response = foreign.post(
        "/api/v1/ai/agents/lead_qualifier/run", json={"context": {"contact_id": crm["contact"]["id"]}}
    )
    assert response.status_code == 404  # another organization's contact does not exist for this one
    assert agents.post("/api/v1/ai/agents/data_analyst/run", json={"task": ""}).status_code == 422


def make_agents_client_for(agents: TestClient, tenant) -> TestClient:
    return TestClient(agents.app, headers={"Authorization": f"Bearer {tenant.org.api_key}"})


def test_agents_can_be_switched_off(make_agents_client, tenant):
    client = make_agents_client(tenant.org.api_key, features=FeatureFlags(agents=False))
    response = client.post("/api/v1/ai/agents/data_analyst/run", json={})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "feature_disabled"
    assert "AI_AGENTS_ENABLED" in response.json()["error"]["message"]
    assert client.get("/api/v1/ai/agents").status_code == 503
    assert client.get("/api/v1/ai/approvals").status_code == 200  # people can still review proposals


def test_without_the_llm_runs_fail_and_say_why(make_agents_client, tenant, dead_llm_url):
    client = make_agents_client(tenant.org.api_key, base_url=dead_llm_url)
    first = run(client, "data_analyst", {})
    assert (first["status"], first["stop_reason"]) == ("failed", "llm_unavailable")
    assert first["error"]["message"].startswith("the LLM is unavailable")
    assert first["error"]["llm_error"] == "llm_unavailable"
    # Three failed attempts opened the circuit: the next run fails without trying the network.
    second = run(client, "data_analyst", {})
    assert (second["status"], second["error"]["llm_error"]) == ("failed", "llm_circuit_open")
    assert [s["kind"] for s in second["steps"]] == ["model", "error"]


# --- approving ---------------------------------------------------------------------------------------


def test_approve_applies_once_through_the_crm_service(agents, openai_server, crm, tenant, publisher, db):
    action = stage_change(agents, openai_server, crm)
    deal_id = crm["deal"]["id"]
    events_before = len(deal_events(publisher, deal_id))

    first = agents.post(f"/api/v1/ai/approvals/{action['id']}/approve")
    assert first.status_code == 200, first.text
    approved = first.json()
    assert approved["status"] == "approved" and approved["auto_applied"] is False
    assert approved["reviewer_id"] == str(tenant.org.user_id) and approved["reviewed_at"]
    assert approved["result"] == {"entity_type": "deal", "entity_id": deal_id, "version": crm["deal"]["version"] + 1}

    deal = tenant.client.get(f"/api/v1/deals/{deal_id}").json()
    assert deal["stage_id"] == crm["stages"]["Negotiation"] and deal["version"] == crm["deal"]["version"] + 1
    [event] = deal_events(publisher, deal_id)[events_before:]
    assert event.operation == "updated" and "stage_id" in event.changed_fields
    with db.organization_scope(tenant.id) as session:
        history = session.scalars(select(DealStageHistory.to_stage_id).where(DealStageHistory.deal_id == deal_id))
        assert str(list(history)[-1]) == crm["stages"]["Negotiation"]

    # Approving again changes nothing and answers with the first result.
    again = agents.post(f"/api/v1/ai/approvals/{action['id']}/approve")
    assert again.status_code == 200 and again.json() == approved
    assert len(deal_events(publisher, deal_id)) == events_before + 1
    assert tenant.client.get(f"/api/v1/deals/{deal_id}").json()["version"] == deal["version"]
    # ... and it cannot be rejected any more.
    assert agents.post(f"/api/v1/ai/approvals/{action['id']}/reject", json={"reason": "late"}).status_code == 409


def test_edit_then_approve_only_touches_proposed_fields(agents, openai_server, crm, tenant):
    action = stage_change(agents, openai_server, crm, amount=60000)
    url = f"/api/v1/ai/approvals/{action['id']}/approve"

    outside = agents.post(url, json={"edited_fields": {"name": "Renamed", "amount": 55000}})
    assert outside.status_code == 422
    assert [d["field"] for d in outside.json()["error"]["details"]] == ["edited_fields.name"]
    invalid = agents.post(url, json={"edited_fields": {"amount": -5}})
    assert invalid.status_code == 422
    assert agents.get(f"/api/v1/ai/approvals/{action['id']}").json()["status"] == "pending"

    response = agents.post(url, json={"edited_fields": {"amount": 55000, "stage_id": crm["stages"]["Proposal"]}})
    assert response.status_code == 200, response.text
    applied = response.json()
    assert applied["edited_fields"] == {
        "amount": {"proposed": "60000.00", "approved": 55000},
        "stage_id": {"proposed": crm["stages"]["Negotiation"], "approved": crm["stages"]["Proposal"]},
    }
    deal = tenant.client.get(f"/api/v1/deals/{crm['deal']['id']}").json()
    assert (deal["amount"], deal["stage_id"]) == ("55000.00", crm["stages"]["Proposal"])


def test_reject_records_the_reason_and_nothing_changes(agents, openai_server, crm, tenant, publisher):
    action = stage_change(agents, openai_server, crm)
    events_before = len(deal_events(publisher, crm["deal"]["id"]))
    url = f"/api/v1/ai/approvals/{action['id']}"
    assert agents.post(f"{url}/reject", json={}).status_code == 422  # a reason is required

    rejected = agents.post(f"{url}/reject", json={"reason": "Legal has not reviewed the terms yet."})
    assert rejected.status_code == 200
    body = rejected.json()
    assert (body["status"], body["rejection_reason"]) == ("rejected", "Legal has not reviewed the terms yet.")
    assert body["reviewer_id"] == str(tenant.org.user_id)
    refused = agents.post(f"{url}/approve")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "action_rejected"
    assert tenant.client.get(f"/api/v1/deals/{crm['deal']['id']}").json()["version"] == crm["deal"]["version"]
    assert len(deal_events(publisher, crm["deal"]["id"])) == events_before


def test_unreviewed_proposals_expire(agents, openai_server, crm, clock):
    action = stage_change(agents, openai_server, crm)
    clock.advance(hours=71)
    assert agents.get(f"/api/v1/ai/approvals/{action['id']}").json()["status"] == "pending"
    clock.advance(hours=2)

    expired = agents.get("/api/v1/ai/approvals", params={"status": "expired"}).json()["data"]
    assert [a["id"] for a in expired] == [action["id"]]
    response = agents.post(f"/api/v1/ai/approvals/{action['id']}/approve")
    assert response.status_code == 409 and response.json()["error"]["code"] == "action_expired"


def test_approving_when_expiry_passes_unlisted(agents, openai_server, crm, clock, tenant):
    action = stage_change(agents, openai_server, crm)
    clock.advance(hours=100)
    response = agents.post(f"/api/v1/ai/approvals/{action['id']}/approve")
    assert response.status_code == 409 and response.json()["error"]["code"] == "action_expired"
    assert agents.get(f"/api/v1/ai/approvals/{action['id']}").json()["status"] == "expired"
    assert tenant.client.get(f"/api/v1/deals/{crm['deal']['id']}").json()["version"] == crm["deal"]["version"]


def test_a_record_changed_since_the_proposal_is_refused(agents, openai_server, crm, tenant, db):
    action = stage_change(agents, openai_server, crm)
    deal_id = crm["deal"]["id"]
    edited = tenant.client.patch(f"/api/v1/deals/{deal_id}", json={"amount": "50000"})
    assert edited.status_code == 200

    response = agents.post(f"/api/v1/ai/approvals/{action['id']}/approve")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "record_changed"
    assert error["details"] == {
        "proposed_on_version": crm["deal"]["version"],
        "current_version": edited.json()["version"],
    }
    failed = agents.get(f"/api/v1/ai/approvals/{action['id']}").json()
    assert failed["status"] == "failed" and failed["result"]["error"]["code"] == "record_changed"
    with db.organization_scope(tenant.id) as session:
        deal = session.get(Deal, uuid.UUID(deal_id))
        assert str(deal.stage_id) == crm["stages"]["Qualification"]


def test_other_organizations_cannot_see_or_decide(agents, openai_server, crm, make_tenant):
    action = stage_change(agents, openai_server, crm)
    stranger = make_agents_client_for(agents, make_tenant("Stranger"))

    assert stranger.post(f"/api/v1/ai/approvals/{action['id']}/approve").status_code == 404
    assert stranger.post(f"/api/v1/ai/approvals/{action['id']}/reject", json={"reason": "x"}).status_code == 404
    assert stranger.get(f"/api/v1/ai/approvals/{action['id']}").status_code == 404
    assert stranger.get("/api/v1/ai/approvals").json()["data"] == []
    assert stranger.get(f"/api/v1/ai/agents/executions/{action['execution_id']}").status_code == 404
    assert agents.get(f"/api/v1/ai/approvals/{action['id']}").json()["status"] == "pending"


def test_approving_creates_records_with_change_events(agents, openai_server, crm, tenant, publisher):
    contact_id = crm["contact"]["id"]
    action = propose(
        agents,
        openai_server,
        "draft_email",
        {"contact_id": contact_id, "subject": "Contract", "body": "Hi Vera, attached.", "reasoning": "Next step."},
        {"deal_id": crm["deal"]["id"]},
    )
    response = agents.post(
        f"/api/v1/ai/approvals/{action['id']}/approve", json={"edited_fields": {"subject": "Our contract"}}
    )
    assert response.status_code == 200, response.text
    activity_id = response.json()["result"]["entity_id"]
    activity = tenant.client.get(f"/api/v1/activities/{activity_id}").json()
    assert (activity["type"], activity["direction"], activity["subject"]) == ("email", "outbound", "Our contract")
    assert activity["custom_properties"] == {"email_status": "queued", "email_to": "vera@aurora.example"}
    assert [(e.entity_type, e.operation) for e in publisher.events if str(e.entity_id) == activity_id] == [
        ("activity", "created")
    ]


def test_the_queue_filters_and_pages(agents, openai_server, crm, clock):
    deal_id = crm["deal"]["id"]
    stage = stage_change(agents, openai_server, crm)
    clock.advance(seconds=1)
    task = propose(
        agents,
        openai_server,
        "create_task",
        {"title": "Send terms", "deal_id": deal_id, "reasoning": "Asked for terms."},
        {"deal_id": deal_id},
    )
    agents.post(f"/api/v1/ai/approvals/{task['id']}/reject", json={"reason": "Already done."})

    def ids(**params: Any) -> list[str]:
        response = agents.get("/api/v1/ai/approvals", params=params)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["data"]]

    assert ids() == [task["id"], stage["id"]]
    assert ids(status="pending") == [stage["id"]]
    assert ids(entity_type="task") == [task["id"]]
    assert ids(entity_type="deal", entity_id=deal_id) == [stage["id"]]
    assert ids(agent="lead_qualifier") == []
    first = agents.get("/api/v1/ai/approvals", params={"limit": 1}).json()
    second = agents.get("/api/v1/ai/approvals", params={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert [a["id"] for a in first["data"] + second["data"]] == [task["id"], stage["id"]]
    assert second["next_cursor"] is None
    assert agents.get("/api/v1/ai/approvals", params={"status": "maybe"}).status_code == 422


def test_concurrent_approvals_apply_once(agents, openai_server, crm, tenant, publisher):
    action = stage_change(agents, openai_server, crm)
    approvals = agents.app.state.agents.approvals
    events_before = len(deal_events(publisher, crm["deal"]["id"]))
    barrier = threading.Barrier(4)

    def approve() -> Any:
        barrier.wait()
        return approvals.approve(tenant.id, uuid.UUID(action["id"]), reviewer_id=tenant.org.user_id).result

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: approve(), range(4)))

    assert len({json.dumps(r, sort_keys=True) for r in results}) == 1  # every caller saw the one result
    assert len(deal_events(publisher, crm["deal"]["id"])) == events_before + 1
    assert tenant.client.get(f"/api/v1/deals/{crm['deal']['id']}").json()["version"] == crm["deal"]["version"] + 1


def test_one_organization_cannot_fill_the_run_queue(make_agents_client, make_tenant, runtime):
    from okyaku.agents.dispatch import AgentRunMessage

    class Parked:  # a queue nobody works: runs stay queued
        def __init__(self) -> None:
            self.messages: list[AgentRunMessage] = []

        def dispatch(self, message: AgentRunMessage) -> None:
            self.messages.append(message)

    busy, other = make_tenant("Busy"), make_tenant("Other")
    client = make_agents_client(busy.org.api_key)
    service = client.app.state.agents
    service.dispatcher = Parked()
    limit = runtime.settings.ai_agent_max_active_runs
    for _ in range(limit):
        assert client.post("/api/v1/ai/agents/data_analyst/run", json={"task": "count deals"}).status_code == 202
    refused = client.post("/api/v1/ai/agents/data_analyst/run", json={"task": "one more"})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "30"
    assert refused.json()["error"]["code"] == "too_many_agent_runs"
    # another organization is not held up by this one
    other_client = make_agents_client(other.org.api_key)
    other_client.app.state.agents.dispatcher = Parked()
    assert other_client.post("/api/v1/ai/agents/data_analyst/run", json={"task": "count deals"}).status_code == 202

    # runs whose message never reached a worker are failed after the queue timeout, freeing the slots
    service.clock.advance(seconds=runtime.settings.ai_agent_queued_timeout_s + 1)
    listed = client.get("/api/v1/ai/agents/executions").json()
    assert len(listed) == limit and {(e["status"], e["stop_reason"]) for e in listed} == {("failed", "queue_timeout")}
    assert client.post("/api/v1/ai/agents/data_analyst/run", json={"task": "again"}).status_code == 202
