"""Each organization's approvals policy decides who may approve, edit then approve, or reject a
proposal; a refusal is 403 approval_not_permitted and leaves the proposal pending. Over the agents
function's FastAPI app, with real agent runs (scripted model) proposing the changes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from okyaku.llm import FeatureFlags
from okyaku.tenancy import create_api_key, create_user
from tests.integration import test_agents_api as agents_api
from tests.integration import test_console as console_tests
from tests.integration.chat_support import FixedClock, ask, build_crm, chat_client
from tests.integration.test_agents_api import deal_events, propose, stage_change
from tests.integration.test_agents_runs import make_crm

# The agents app's fixtures (a client per API key over one app, its clock), shared with that module.
agents, clock, make_agents_client = agents_api.agents, agents_api.clock, agents_api.make_agents_client

POLICY = "/api/v1/ai/approvals/policy"
DEFAULTS = {"approver_role": "member", "admin_only_actions": ["draft_email"], "allow_self_approval": True}


@pytest.fixture
def crm(tenant, pipeline) -> dict[str, Any]:
    return make_crm(tenant, pipeline)


@pytest.fixture
def make_member(db, tenant, make_agents_client):
    def make(email: str = "member@acme.example", **kwargs: Any) -> TestClient:
        user = create_user(db, tenant.id, email, email.split("@")[0])
        key = create_api_key(db, tenant.id, f"{email} key", user.id)
        client = make_agents_client(key, **kwargs)
        client.user_id, client.api_key = str(user.id), key  # type: ignore[attr-defined]
        return client

    return make


@pytest.fixture
def member(make_member) -> TestClient:
    return make_member()


def set_policy(admin: TestClient, **policy: Any) -> dict[str, Any]:
    response = admin.put(POLICY, json=policy)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def refused(response: Any, rule: str) -> dict[str, Any]:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "approval_not_permitted" and error["details"]["rule"] == rule, error
    return error  # type: ignore[no-any-return]


def listed(client: TestClient, action_id: str) -> dict[str, Any]:
    [row] = [r for r in client.get("/api/v1/ai/approvals").json()["data"] if r["id"] == action_id]
    return row  # type: ignore[no-any-return]


def email_draft(client: TestClient, openai_server, crm: dict[str, Any]) -> dict[str, Any]:
    arguments = {
        "contact_id": crm["contact"]["id"],
        "subject": "Contract terms",
        "body": "Hi Vera, here are the terms.",
        "reasoning": "She asked for the terms.",
    }
    return propose(client, openai_server, "draft_email", arguments, {"deal_id": crm["deal"]["id"]})


def test_the_default_policy_lets_members_decide_as_before(agents, member, openai_server, crm, tenant):
    policy = member.get(POLICY)
    assert policy.status_code == 200
    assert policy.json() == {**DEFAULTS, "updated_at": None, "updated_by": None}

    action = stage_change(member, openai_server, crm)
    assert action["requested_by"] == member.user_id  # type: ignore[attr-defined]
    assert (listed(member, action["id"])["can_approve"], listed(member, action["id"])["approval_refusal"]) == (
        True,
        None,
    )
    approved = member.post(f"/api/v1/ai/approvals/{action['id']}/approve")  # their own request, too
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved" and approved.json()["can_approve"] is False
    assert approved.json()["approval_refusal"]["rule"] == "status"
    deal = tenant.client.get(f"/api/v1/deals/{crm['deal']['id']}").json()
    assert deal["stage_id"] == crm["stages"]["Negotiation"]


def test_admins_only_refuses_members_and_the_proposal_waits_for_an_admin(
    agents, member, openai_server, crm, tenant, publisher
):
    stored = set_policy(agents, approver_role="admin")
    assert stored["approver_role"] == "admin" and stored["updated_by"] == str(tenant.org.user_id)
    assert stored["updated_at"] and member.get(POLICY).json()["approver_role"] == "admin"
    action = stage_change(member, openai_server, crm, amount=60000)
    url = f"/api/v1/ai/approvals/{action['id']}"
    events_before = len(deal_events(publisher, crm["deal"]["id"]))

    row = listed(member, action["id"])
    assert row["can_approve"] is False and row["approval_refusal"]["rule"] == "role"
    assert listed(agents, action["id"])["can_approve"] is True
    error = refused(member.post(f"{url}/approve"), "role")
    assert "only admins" in error["message"] and error["details"]["role"] == "member"
    refused(member.post(f"{url}/approve", json={"edited_fields": {"amount": 1}}), "role")
    refused(member.post(f"{url}/reject", json={"reason": "no"}), "role")

    assert agents.get(url).json()["status"] == "pending"
    assert tenant.client.get(f"/api/v1/deals/{crm['deal']['id']}").json()["version"] == crm["deal"]["version"]
    assert len(deal_events(publisher, crm["deal"]["id"])) == events_before

    first = agents.post(f"{url}/approve")
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "approved" and first.json()["reviewer_id"] == str(tenant.org.user_id)
    again = agents.post(f"{url}/approve")
    assert again.status_code == 200 and again.json()["result"] == first.json()["result"]
    assert len(deal_events(publisher, crm["deal"]["id"])) == events_before + 1  # applied once
    deal = tenant.client.get(f"/api/v1/deals/{crm['deal']['id']}").json()
    assert (deal["stage_id"], deal["version"]) == (crm["stages"]["Negotiation"], crm["deal"]["version"] + 1)


def test_an_admin_only_action_is_refused_to_members(agents, member, openai_server, crm):
    email = email_draft(member, openai_server, crm)  # draft_email is admin-only by default
    assert listed(member, email["id"])["approval_refusal"]["rule"] == "action"
    error = refused(member.post(f"/api/v1/ai/approvals/{email['id']}/approve"), "action")
    assert "draft_email" in error["message"]
    assert member.get(f"/api/v1/ai/approvals/{email['id']}").json()["status"] == "pending"
    # An organization chooses its own list: here the stage change, and no longer the email.
    set_policy(agents, admin_only_actions=["update_deal", "update_deal"])
    assert member.get(POLICY).json()["admin_only_actions"] == ["update_deal"]
    stage = stage_change(member, openai_server, crm)
    refused(member.post(f"/api/v1/ai/approvals/{stage['id']}/approve"), "action")
    assert member.post(f"/api/v1/ai/approvals/{email['id']}/approve").status_code == 200
    assert agents.post(f"/api/v1/ai/approvals/{stage['id']}/approve").status_code == 200


def test_without_self_approval_someone_else_must_approve(agents, member, make_member, openai_server, crm):
    set_policy(agents, allow_self_approval=False)
    colleague = make_member("colleague@acme.example")
    mine = stage_change(member, openai_server, crm)
    url = f"/api/v1/ai/approvals/{mine['id']}"

    assert listed(member, mine["id"])["approval_refusal"]["rule"] == "self_approval"
    assert listed(colleague, mine["id"])["can_approve"] is True
    error = refused(member.post(f"{url}/approve"), "self_approval")
    assert "someone else" in error["message"]
    assert member.get(url).json()["status"] == "pending"
    approved = colleague.post(f"{url}/approve")
    assert approved.status_code == 200 and approved.json()["reviewer_id"] == colleague.user_id  # type: ignore[attr-defined]

    # The rule holds for admins too, and rejecting one's own request stays allowed.
    admins = email_draft(agents, openai_server, crm)
    refused(agents.post(f"/api/v1/ai/approvals/{admins['id']}/approve"), "self_approval")
    withdrawn = agents.post(f"/api/v1/ai/approvals/{admins['id']}/reject", json={"reason": "wrong contact"})
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "rejected"


def test_members_cannot_change_the_policy(agents, member):
    response = member.put(POLICY, json={"approver_role": "member", "admin_only_actions": []})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert response.json()["error"]["details"] == {"role": "member"}
    assert agents.get(POLICY).json()["updated_at"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"approver_role": "owner"}, "approver_role"),
        ({"admin_only_actions": ["delete_everything"]}, "admin_only_actions.0"),
        ({"admin_only_actions": "draft_email"}, "admin_only_actions"),
        ({"allow_self_approval": "sometimes"}, "allow_self_approval"),
        ({"approver": "admin"}, "approver"),
    ],
)
def test_a_bad_policy_is_refused_and_changes_nothing(agents, body, field):
    response = agents.put(POLICY, json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [d["field"] for d in error["details"]], error
    assert agents.get(POLICY).json()["updated_at"] is None


def test_another_organization_neither_reads_nor_alters_the_policy(agents, make_tenant, make_agents_client):
    set_policy(agents, approver_role="admin", allow_self_approval=False)
    other = make_agents_client(make_tenant("Globex").org.api_key)
    assert other.get(POLICY).json() == {**DEFAULTS, "updated_at": None, "updated_by": None}
    set_policy(other, admin_only_actions=[])
    assert agents.get(POLICY).json()["approver_role"] == "admin"
    assert agents.get(POLICY).json()["admin_only_actions"] == ["draft_email"]
    assert other.get(POLICY).json()["approver_role"] == "member"


def test_auto_apply_still_applies_low_risk_creates_but_never_an_admin_only_action(
    agents, make_agents_client, tenant, openai_server, crm
):
    set_policy(agents, approver_role="admin")  # concerns people: the system's auto-apply goes on
    auto = make_agents_client(tenant.org.api_key, features=FeatureFlags(require_approval_for_writes=False))
    arguments = {"title": "Send the terms", "deal_id": crm["deal"]["id"], "reasoning": "She asked for them."}
    applied = propose(auto, openai_server, "create_task", arguments, {"deal_id": crm["deal"]["id"]})
    assert (applied["status"], applied["auto_applied"]) == ("approved", True)

    set_policy(agents, approver_role="admin", admin_only_actions=["create_task"])
    waiting = propose(auto, openai_server, "create_task", arguments, {"deal_id": crm["deal"]["id"]})
    assert (waiting["status"], waiting["auto_applied"]) == ("pending", False)
    tasks = tenant.client.get("/api/v1/tasks", params={"deal_id": crm["deal"]["id"]}).json()["data"]
    assert len(tasks) == 1
    assert agents.post(f"/api/v1/ai/approvals/{waiting['id']}/approve").json()["status"] == "approved"


def test_a_service_key_decides_as_a_member(agents, db, tenant, make_agents_client, openai_server, crm):
    set_policy(agents, approver_role="admin")
    service = make_agents_client(create_api_key(db, tenant.id, "integration"))
    action = stage_change(agents, openai_server, crm)
    refused(service.post(f"/api/v1/ai/approvals/{action['id']}/approve"), "role")
    assert uuid.UUID(agents.get(f"/api/v1/ai/approvals/{action['id']}").json()["id"])


def test_the_console_disables_what_the_policy_refuses_and_refuses_it_if_posted(
    console, services, agents, db, tenant, openai_server, crm
):
    set_policy(agents, approver_role="admin")
    _, action = console_tests.propose_deal_update(services, openai_server, tenant, crm)
    user = create_user(db, tenant.id, "member@acme.example", "Mem Ber")
    token = console_tests.sign_in(console, create_api_key(db, tenant.id, "member console", user.id))

    page = console.get("/console/approvals").text
    card = page[page.index(f'id="action-{action.id}"') :]
    assert "You cannot approve this:" in card and "only admins" in card
    assert f'action="/console/approvals/{action.id}/approve"' not in card
    assert card.count("disabled") == 2  # Approve and Reject, each with the reason

    posted = console.post(f"/console/approvals/{action.id}/approve", data={"csrf_token": token})
    assert posted.status_code == 403 and "only admins" in posted.text
    rejected = console.post(f"/console/approvals/{action.id}/reject", data={"csrf_token": token, "reason": "no"})
    assert rejected.status_code == 403
    assert services.agents.approvals.get(tenant.id, action.id).status == "pending"


def test_what_a_member_asked_for_in_chat_is_theirs_to_approve_or_not(
    agents, member, runtime, make_gateway, dead_llm_url, tenant, pipeline
):
    set_policy(agents, allow_self_approval=False)
    chat_clock = FixedClock()
    build_crm(tenant, pipeline, runtime, chat_clock.now)
    with chat_client(runtime, make_gateway(dead_llm_url), member.api_key, chat_clock) as chat:  # type: ignore[attr-defined]
        [proposed] = ask(chat, "Create a task to call Sarah next Tuesday")["actions"]
    url = f"/api/v1/ai/approvals/{proposed['pending_action_id']}"
    assert member.get(url).json()["requested_by"] == member.user_id  # type: ignore[attr-defined]
    refused(member.post(f"{url}/approve"), "self_approval")
    assert agents.post(f"{url}/approve").json()["status"] == "approved"
