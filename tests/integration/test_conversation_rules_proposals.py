"""The rules floor's task proposals: without the LLM the sweep queues a task per explicit, dated
commitment (once per activity and item, across sweeps and restarts), and the LLM's later analysis
withdraws those still pending. Postgres real; the LLM a closed port, then the scripted server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time

from okyaku.agents.approvals import ApprovalService
from okyaku.agents.models import PendingAction
from okyaku.conversation.proposals import RULES_AGENT
from okyaku.conversation.rules import is_explicit_commitment
from okyaku.conversation.service import ConversationService
from tests.integration.test_conversation import (  # noqa: F401  (fixtures used by name)
    CALL_NOTE,
    clock,
    create_activity,
    crm,
    good_analysis,
    make_client,
    make_service,
    rows,
)
from tests.support.openai_server import Reply

# Two unmistakable commitments (CALL_NOTE's), a hedged one, a negated one and a dateless one.
NOTE = CALL_NOTE + (
    "\nMaybe we will send a healthcare case study on Monday."
    "\nWe won't call them before December 1."
    "\nI'll ask finance about the discount."
)


def on_the_day(service: ConversationService, day: date = date(2026, 11, 18)) -> ConversationService:
    service.clock = lambda: datetime.combine(day, time(16, 0), tzinfo=UTC)
    return service


def test_explicit_commitment_is_strict() -> None:
    assert is_explicit_commitment("I'll send the revised proposal by Friday")
    assert is_explicit_commitment("Priya will book a security review with IT next Tuesday")
    assert is_explicit_commitment("Please send the signed order form by March 3")
    assert is_explicit_commitment("Send revised quote Thursday")
    assert not is_explicit_commitment("Maybe we will send a case study on Monday")
    assert not is_explicit_commitment("We won't call them before December 1")
    assert not is_explicit_commitment("If legal agrees, I'll send it Friday")
    assert not is_explicit_commitment("Will you be at the conference on Friday?")
    assert not is_explicit_commitment("The kickoff call is scheduled for December 1")


def test_a_promise_whose_day_has_passed_is_not_queued(
    tenant,  # type: ignore[no-untyped-def]
    runtime,
    make_service: Callable[..., ConversationService],  # noqa: F811
    dead_llm_url: str,
) -> None:
    create_activity(tenant, body="We will send the signed order form by Friday. Next week we'll call their CFO.")
    late = on_the_day(make_service(dead_llm_url), date(2026, 11, 21))  # Friday Nov 20 has passed
    assert late.sweep(organization_ids=[tenant.id]).rules_proposals == 1
    [task] = rows(runtime, tenant.id, PendingAction)
    assert "call their CFO" in task.changes["title"]["after"]


def test_without_the_llm_the_rules_floor_proposes_tasks_once_and_the_llm_supersedes_them(
    tenant,  # type: ignore[no-untyped-def]
    crm,  # noqa: F811
    runtime,
    make_service: Callable[..., ConversationService],  # noqa: F811
    dead_llm_url: str,
    openai_server,
    make_client,  # noqa: F811
) -> None:
    activity = create_activity(tenant, crm, body=NOTE)
    # The sweep runs on the day of the call: both promises are still ahead.
    down = on_the_day(make_service(dead_llm_url))

    report = down.sweep(organization_ids=[tenant.id])
    assert (report.llm_available, report.rules_proposals) == (False, 2)
    made = rows(runtime, tenant.id, PendingAction)
    assert {(a.agent, a.action, a.status) for a in made} == {(RULES_AGENT, "create_task", "pending")}
    by_due = {a.changes["due_date"]["after"][:10]: a for a in made}
    assert sorted(by_due) == ["2026-11-20", "2026-11-24"]  # Friday and next Tuesday after Nov 18
    send = by_due["2026-11-20"]
    assert "rules floor" in send.reasoning and "\u201cI'll send the revised proposal by Friday.\u201d" in send.reasoning
    assert send.context["source"]["id"] == activity["id"] and send.context["method"] == "rules"
    assert send.changes["deal_id"]["after"] == crm["deal"]["id"]
    assert "Owner: Priya" in by_due["2026-11-24"].changes["description"]["after"]

    # The activity's page links them, as it does the LLM's proposals.
    answer = make_client(down).get(f"/api/v1/ai/conversation/activities/{activity['id']}").json()
    assert answer["status"] == "waiting_for_llm"
    assert sorted(p["id"] for p in answer["proposals"]) == sorted(str(a.id) for a in made)
    [timeline] = down.stored_analyses(tenant.id, [uuid.UUID(activity["id"])]).values()
    assert sorted(p.id for p in timeline.proposals) == sorted(a.id for a in made)

    # Another sweep, and a restarted service: nothing proposed twice.
    assert down.sweep(organization_ids=[tenant.id]).rules_proposals == 0
    assert on_the_day(make_service(dead_llm_url)).sweep(organization_ids=[tenant.id]).rules_proposals == 0
    assert len(rows(runtime, tenant.id, PendingAction)) == 2

    # Approving one creates the task through the CRM services.
    approved = ApprovalService(runtime, clock=down.clock).approve(tenant.id, send.id, reviewer_id=tenant.org.user_id)
    assert approved.status == "approved", approved.result
    tasks = tenant.client.get("/api/v1/tasks", params={"deal_id": crm["deal"]["id"]}).json()["data"]
    assert [(t["title"], t["due_date"][:10]) for t in tasks] == [
        ("I'll send the revised proposal by Friday", "2026-11-20")
    ]
    # A rejected or approved item is still never proposed again.
    assert down.sweep(organization_ids=[tenant.id]).rules_proposals == 0

    # The LLM analyses the activity: the rules floor's pending proposal is withdrawn, the approved
    # one stays, and the model's own proposals take their place.
    openai_server.script(Reply.json_object(good_analysis()))
    up = make_service(openai_server.base_url)
    assert up.sweep(organization_ids=[tenant.id]).analysed == 1
    after = rows(runtime, tenant.id, PendingAction)
    floor = {str(a.id): a.status for a in after if a.agent == RULES_AGENT}
    assert floor == {str(send.id): "approved", str(by_due["2026-11-24"].id): "withdrawn"}
    pending = [a for a in after if a.status == "pending"]
    assert pending and {a.agent for a in pending} == {"conversation"}
    # Analysed by the LLM: the rules floor proposes nothing more for it, even with the model down.
    assert on_the_day(make_service(dead_llm_url)).sweep(organization_ids=[tenant.id]).rules_proposals == 0
