"""Conversation intelligence end to end: activities written through the CRM API, their change events
delivered as the ConversationQueue delivers them (EventBridge envelope in an SQS record) to the
function's handler, the LLM a scripted OpenAI-compatible server over HTTP, Postgres real."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from okyaku.agents.approvals import ApprovalService
from okyaku.agents.models import PendingAction
from okyaku.conversation.api import create_conversation_app
from okyaku.conversation.models import ConversationAnalysisRow, ConversationWaiting
from okyaku.conversation.service import ConversationService
from okyaku.conversation.store import content_hash_of, load_activity
from okyaku.db import Database
from okyaku.db.models import Deal
from okyaku.entry import function_handler
from okyaku.events.envelope import eventbridge_envelope
from okyaku.events.model import ChangeEvent
from okyaku.lambda_events import sqs_record
from okyaku.local.sqs import QueuedMessage
from okyaku.runtime import Runtime
from tests.support.openai_server import RecordedRequest, Reply, ScriptedOpenAIServer

CALL_NOTE = (
    "Call with Priya Raman. She has been promoted to VP Operations. Budget is $45,000 for year one and "
    "they also looked at Salesforce.\n"
    "I'll send the revised proposal by Friday. Priya will book a security review with IT next Tuesday.\n"
    "Her direct line is +1 415 555 0199.\n"
    "We agreed to move this to Negotiation; she expects to sign by December 18."
)


class Clock:
    """The gateway's monotonic clock (its breaker), moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def good_analysis(**overrides: Any) -> dict[str, Any]:
    analysis: dict[str, Any] = {
        "summary": "Priya (now VP Operations) is ready to negotiate; budget $45k; Salesforce also evaluated.",
        "key_points": [{"point": "Budget is $45k", "quote": "Budget is $45,000 for year one"}],
        "action_items": [
            {
                "description": "Send the revised proposal",
                "owner": "us",
                "due_date": "2026-11-20",
                "quote": "I\u2019ll send the revised proposal by Friday.",  # a curly apostrophe: still a span
            },
            {
                "description": "Book a security review with IT",
                "owner": "named",
                "owner_name": "Priya",
                "due_date": "2026-11-24",
                "quote": "Priya will book a security review with IT next Tuesday",
            },
            {
                "description": "Send the case study",
                "owner": "us",
                "due_date": "2026-11-19",
                "quote": "I will send our healthcare case study tomorrow",  # invented: not in the text
            },
        ],
        "competitors": [{"name": "Salesforce", "quote": "they also looked at   Salesforce"}],
        "pricing": [{"detail": "Budget for year one", "amount": 45000, "currency": "USD", "quote": "$45,000"}],
        "sentiment": {"score": 0.6, "label": "positive", "quotes": ["she expects to sign by December 18"]},
        "deal": {
            "stage": {"stage": "Negotiation", "quote": "We agreed to move this to Negotiation"},
            "close_date": {"close_date": "2026-12-18", "quote": "she expects to sign by December 18"},
            "amount": {"amount": 45000, "currency": "USD", "quote": "Budget is $45,000 for year one"},
        },
        "contact_facts": [
            {
                "field": "job_title",
                "value": "VP Operations",
                "person_name": "Priya",
                "quote": "promoted to VP Operations",
            },
            {"field": "phone", "value": "+1 415 555 0199", "quote": "Her direct line is +1 415 555 0199"},
            # Someone else's title is not written on this contact.
            {"field": "job_title", "value": "CIO", "person_name": "Greg Hale", "quote": "security review with IT"},
        ],
    }
    analysis.update(overrides)
    return analysis


def quoting_responder(request: RecordedRequest) -> Reply:
    """A model that summarises any activity by quoting its first sentence."""
    text = re.search(r"<<<\n(.*)\n>>>", request.messages[-1]["content"], re.S)
    assert text is not None
    first = re.split(r"(?<=[.!?])\s", text.group(1).strip())[0]
    return Reply.json_object(
        {
            "summary": "A short conversation.",
            "key_points": [{"point": "What was said first", "quote": first}],
            "sentiment": {"score": 0.0, "label": "neutral"},
        }
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_service(runtime: Runtime, make_gateway: Callable[..., Any], openai_server: ScriptedOpenAIServer, clock: Clock):
    def make(base_url: str | None = None, runtime_: Runtime | None = None, **gateway: Any) -> ConversationService:
        llm = make_gateway(base_url or openai_server.base_url, clock=clock, **gateway)
        return ConversationService(runtime_ or runtime, llm)

    return make


@pytest.fixture
def service(make_service: Callable[..., ConversationService]) -> ConversationService:
    return make_service()


@pytest.fixture
def make_client(tenant) -> Iterator[Callable[[ConversationService], TestClient]]:  # type: ignore[no-untyped-def]
    clients: list[TestClient] = []

    def make(service: ConversationService, api_key: str | None = None) -> TestClient:
        client = TestClient(
            create_conversation_app(service), headers={"Authorization": f"Bearer {api_key or tenant.org.api_key}"}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def envelope_body(change: ChangeEvent) -> str:
    return json.dumps(eventbridge_envelope(change, account="123456789012", region="us-east-1"))


def deliver(service: ConversationService, changes: list[ChangeEvent], *, bodies: Sequence[str] = ()) -> dict[str, Any]:
    """The function's handler given one SQS batch of these change events (then ``bodies`` as they
    are), as the queue delivers them."""
    records = [
        sqs_record(QueuedMessage(f"message-{i}", body, {}, 0, 1), "ConversationQueue")
        for i, body in enumerate([*(envelope_body(change) for change in changes), *bodies])
    ]
    handler = function_handler(name="conversation", on_record=service.on_change_record, on_schedule=service.on_schedule)
    result: dict[str, Any] = handler({"Records": records}, None)
    return result


def activity_events(publisher, activity_id: str) -> list[ChangeEvent]:  # type: ignore[no-untyped-def]
    return [e for e in publisher.events if e.entity_type == "activity" and str(e.entity_id) == activity_id]


@pytest.fixture
def crm(tenant, pipeline) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    contact = tenant.client.post(
        "/api/v1/contacts", json={"first_name": "Priya", "last_name": "Raman", "job_title": "Ops Manager"}
    ).json()
    deal = tenant.client.post(
        "/api/v1/deals",
        json={"name": "Northwind renewal", "pipeline_id": pipeline["id"], "amount": 30000, "contact_id": contact["id"]},
    ).json()
    return {"contact": contact, "deal": deal, "pipeline": pipeline}


def create_activity(tenant, crm: dict[str, Any] | None = None, body: str = CALL_NOTE, **extra: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    payload: dict[str, Any] = {
        "type": "call",
        "direction": "outbound",
        "subject": "Call with Priya",
        "body": body,
        "occurred_at": "2026-11-18T15:00:00Z",
        **extra,
    }
    if crm is not None:
        payload |= {"contact_id": crm["contact"]["id"], "deal_id": crm["deal"]["id"]}
    response = tenant.client.post("/api/v1/activities", json=payload)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def rows(runtime: Runtime, organization_id: uuid.UUID, model: Any) -> list[Any]:
    with runtime.db.organization_scope(organization_id) as session:
        return list(session.scalars(select(model)))


# --- a good reply, an invented quote ----------------------------------------------------------------


def test_an_activity_is_analysed_on_arrival_with_quotes_checked_and_proposals_queued(
    tenant, crm, publisher, service, openai_server, runtime, make_client
) -> None:
    activity = create_activity(tenant, crm)
    openai_server.script(Reply.json_object(good_analysis()))

    assert deliver(service, activity_events(publisher, activity["id"])) == {"batchItemFailures": []}

    (row,) = rows(runtime, tenant.id, ConversationAnalysisRow)
    assert (row.analysis_version, row.activity_version, row.method, row.trigger) == (1, 1, "llm", "event")
    stored = row.analysis
    # The invented action item is gone, and counted; the others quote the text exactly.
    assert [i["description"] for i in stored["action_items"]] == [
        "Send the revised proposal",
        "Book a security review with IT",
    ]
    assert [(d["category"], d["reason"]) for d in row.dropped] == [("action_items", "quote not in the text")]
    for name in ("key_points", "action_items", "competitors", "pricing", "contact_facts"):
        for item in stored[name]:
            assert CALL_NOTE[item["start"] : item["end"]] == item["quote"], item
    assert stored["action_items"][0]["quote"] == "I'll send the revised proposal by Friday"  # the text's own words
    assert stored["competitors"][0]["quote"] == "they also looked at Salesforce"

    # Proposals: the deal (stage, close date, amount in one), the contact's title, one task per dated item.
    actions = {a.action: a for a in rows(runtime, tenant.id, PendingAction)}
    assert sorted(actions) == ["create_task", "update_contact", "update_deal"]
    tasks = [a for a in rows(runtime, tenant.id, PendingAction) if a.action == "create_task"]
    assert sorted(t.changes["due_date"]["after"][:10] for t in tasks) == ["2026-11-20", "2026-11-24"]
    assert all(t.status == "pending" and t.agent == "conversation" for t in rows(runtime, tenant.id, PendingAction))
    deal_change = actions["update_deal"]
    assert deal_change.changes["stage_id"]["after_label"] == "Negotiation"
    assert deal_change.changes["expected_close_date"]["after"] == "2026-12-18"
    assert deal_change.changes["amount"] == {"before": "30000.00", "after": "45000.00"}
    assert "\u201cWe agreed to move this to Negotiation\u201d" in deal_change.reasoning
    assert actions["update_contact"].changes == {
        "job_title": {"before": "Ops Manager", "after": "VP Operations"},
        "phone": {"before": None, "after": "+1 415 555 0199"},
    }
    assert "promoted to VP Operations" in actions["update_contact"].reasoning
    assert sorted(row.proposal_ids) == sorted(str(a.id) for a in rows(runtime, tenant.id, PendingAction))

    # Nothing changed without approval.
    deal = tenant.client.get(f"/api/v1/deals/{crm['deal']['id']}").json()
    assert (deal["stage_id"], deal["amount"], deal["version"]) == (crm["deal"]["stage_id"], "30000.00", 1)

    # The GET shows it, with history and proposals.
    answer = make_client(service).get(f"/api/v1/ai/conversation/activities/{activity['id']}").json()
    assert (answer["status"], answer["degraded"], answer["message"]) == ("analysed", False, None)
    assert answer["analysis"]["analysis_version"] == 1 and answer["analysis"]["dropped_items"] == 1
    assert [h["current"] for h in answer["history"]] == [True]
    assert {p["action"] for p in answer["proposals"]} == {"create_task", "update_contact", "update_deal"}
    assert answer["rules"]["method"] == "rules"

    # Approving the deal proposal applies it through the CRM services.
    ApprovalService(runtime).approve(tenant.id, deal_change.id, reviewer_id=tenant.org.user_id)
    deal = tenant.client.get(f"/api/v1/deals/{crm['deal']['id']}").json()
    assert (deal["amount"], deal["expected_close_date"]) == ("45000.00", "2026-12-18")


def test_redelivery_and_unchanged_text_do_nothing_and_a_new_text_is_a_new_version(
    tenant, crm, publisher, service, openai_server, runtime
) -> None:
    activity = create_activity(tenant, crm)
    openai_server.script(Reply.json_object(good_analysis()))
    events = activity_events(publisher, activity["id"])
    deliver(service, events)
    proposals_after_first = len(rows(runtime, tenant.id, PendingAction))
    calls = len(openai_server.requests_to("chat"))

    # The same event again (at-least-once delivery), twice in one batch even: nothing happens.
    assert deliver(service, events + events) == {"batchItemFailures": []}
    # An update that leaves the text alone: its event does nothing either.
    tenant.client.patch(f"/api/v1/activities/{activity['id']}", json={"duration_minutes": 25})
    assert deliver(service, activity_events(publisher, activity["id"])[-1:]) == {"batchItemFailures": []}
    assert len(openai_server.requests_to("chat")) == calls
    assert len(rows(runtime, tenant.id, ConversationAnalysisRow)) == 1
    assert len(rows(runtime, tenant.id, PendingAction)) == proposals_after_first

    # A new text: analysed again, a second version, its own proposals.
    new_body = CALL_NOTE + "\nPriya will send the signed order form on December 10."
    tenant.client.patch(f"/api/v1/activities/{activity['id']}", json={"body": new_body})
    openai_server.script(
        Reply.json_object(
            good_analysis(
                action_items=[
                    {
                        "description": "Send the signed order form",
                        "owner": "named",
                        "owner_name": "Priya",
                        "due_date": "2026-12-10",
                        "quote": "Priya will send the signed order form on December 10.",
                    }
                ]
            )
        )
    )
    latest = activity_events(publisher, activity["id"])[-1]
    assert deliver(service, [latest, latest]) == {"batchItemFailures": []}
    analyses = sorted(rows(runtime, tenant.id, ConversationAnalysisRow), key=lambda r: r.analysis_version)
    assert [(a.analysis_version, a.activity_version) for a in analyses] == [(1, 1), (2, 3)]
    second = analyses[1]
    new_tasks = [a for a in rows(runtime, tenant.id, PendingAction) if str(a.id) in second.proposal_ids]
    assert [t.changes["due_date"]["after"][:10] for t in new_tasks if t.action == "create_task"] == ["2026-12-10"]

    # A forced re-run on demand adds a version to the history but no proposals.
    openai_server.script(Reply.json_object(good_analysis()))
    total = len(rows(runtime, tenant.id, PendingAction))
    answer = service.analyse_now(tenant.id, uuid.UUID(activity["id"]), force=True)
    assert [h["analysis_version"] for h in answer.model_dump()["history"]] == [1, 2, 3]
    assert [h.current for h in answer.history] == [False, True, True]
    assert answer.analysis is not None and answer.analysis.analysis_version == 3
    assert len(rows(runtime, tenant.id, PendingAction)) == total

    # A forced re-run while the model fails: the stored analysis, said to be the stored one.
    openai_server.fault = Reply.error(500)
    answer = service.analyse_now(tenant.id, uuid.UUID(activity["id"]), force=True)
    assert (answer.status, answer.degraded) == ("analysed", True)
    assert answer.message == "not analysed again: the language model is unavailable; this is the stored analysis"
    assert answer.analysis is not None and answer.analysis.analysis_version == 3


# --- malformed and timed-out replies ----------------------------------------------------------------


def test_a_malformed_reply_leaves_the_activity_waiting_and_the_sweep_analyses_it(
    tenant, crm, publisher, service, openai_server, runtime
):  # type: ignore[no-untyped-def]
    activity = create_activity(tenant, crm)
    # Not JSON, then (the repair round) JSON of the wrong shape: acknowledged, not retried into the DLQ.
    openai_server.script(Reply.text("Sure! Here is the analysis: ..."), Reply.json_object({"summary": ""}))
    events = activity_events(publisher, activity["id"])
    assert deliver(service, events) == {"batchItemFailures": []}
    assert rows(runtime, tenant.id, ConversationAnalysisRow) == []
    assert rows(runtime, tenant.id, PendingAction) == []
    (waiting,) = rows(runtime, tenant.id, ConversationWaiting)
    assert (str(waiting.activity_id), waiting.reason, waiting.attempts) == (activity["id"], "llm_output_invalid", 1)

    openai_server.script(Reply.json_object(good_analysis()))  # the sweep finds a good answer
    report = service.sweep(organization_ids=[tenant.id])
    assert (report.analysed, report.failed) == (1, 0)
    assert [r.trigger for r in rows(runtime, tenant.id, ConversationAnalysisRow)] == ["sweep"]
    assert rows(runtime, tenant.id, ConversationWaiting) == []


def test_a_timed_out_reply_leaves_the_activity_waiting(
    tenant, crm, publisher, make_service, openai_server, runtime
) -> None:  # type: ignore[no-untyped-def]
    service = make_service(timeout_s=0.2, max_retries=0)
    activity = create_activity(tenant, crm)
    openai_server.script(Reply.slow(1.0, json.dumps(good_analysis())))
    assert deliver(service, activity_events(publisher, activity["id"])) == {"batchItemFailures": []}
    assert rows(runtime, tenant.id, ConversationAnalysisRow) == []
    (waiting,) = rows(runtime, tenant.id, ConversationWaiting)
    assert waiting.reason in ("llm_unavailable", "llm_timeout")  # the latter once the gateway tells them apart


def test_a_poison_message_fails_alone_while_the_model_is_down(
    tenant, crm, publisher, make_service, dead_llm_url, runtime
) -> None:  # type: ignore[no-untyped-def]
    service = make_service(dead_llm_url)
    activity = create_activity(tenant, crm)
    result = deliver(service, activity_events(publisher, activity["id"]), bodies=['{"not": "a change event"}'])
    assert result == {
        "batchItemFailures": [{"itemIdentifier": "message-1"}]
    }  # only the poison message: retried, then the DLQ
    assert [str(w.activity_id) for w in rows(runtime, tenant.id, ConversationWaiting)] == [activity["id"]]


def test_a_database_failure_is_retried_not_acknowledged(
    tenant, crm, publisher, settings, make_service, openai_server
) -> None:  # type: ignore[no-untyped-def]
    activity = create_activity(tenant, crm)
    nowhere = settings.database_url.rsplit("@", 1)[0] + "@127.0.0.1:1/okyaku"
    down = Database(nowhere)
    try:
        service = make_service(runtime_=Runtime(settings.model_copy(update={"database_url": nowhere}), db=down))
        result = deliver(service, activity_events(publisher, activity["id"]))
    finally:
        down.dispose()
    assert len(result["batchItemFailures"]) == 1
    assert openai_server.requests_to("chat") == []


# --- without the LLM; outage then recovery ----------------------------------------------------------


def test_without_the_llm_the_get_says_not_analysed_and_gives_the_rules_floor(
    tenant, crm, publisher, make_service, dead_llm_url, make_client
) -> None:
    service = make_service(dead_llm_url)
    activity = create_activity(tenant, crm)
    client = make_client(service)
    path = f"/api/v1/ai/conversation/activities/{activity['id']}"
    before = client.get(path).json()  # no delivery yet: not analysed, and the probe finds no model
    assert (before["status"], before["waiting"]) == ("not_analysed", None)
    assert before["message"] == "not analysed yet: the language model is unavailable" and before["degraded"]

    assert deliver(service, activity_events(publisher, activity["id"])) == {"batchItemFailures": []}
    tenant_competitors = {"competitors": [{"name": "Salesforce", "aliases": ["SFDC"]}]}
    assert client.put("/api/v1/ai/conversation/competitors", json=tenant_competitors).status_code == 200
    answer = client.get(path).json()
    assert answer["status"] == "waiting_for_llm"
    assert answer["message"] == (
        "not analysed yet: waiting for the language model (llm_unavailable); it is analysed when the model is back"
    )
    assert (answer["waiting"]["reason"], answer["waiting"]["attempts"]) == ("llm_unavailable", 1)
    assert answer["degraded"] is True and answer["analysis"] is None and answer["history"] == []
    rules = answer["rules"]
    assert rules["method"] == "rules"
    assert [(a["owner"], a["due_date"]) for a in rules["action_items"]] == [
        ("us", "2026-11-20"),
        ("named", "2026-11-24"),
    ]
    assert [m["amount"] for m in rules["money"]] == [45000.0]
    assert [c["name"] for c in rules["competitors"]] == ["Salesforce"]
    for item in rules["action_items"] + rules["money"] + rules["competitors"] + rules["dates"]:
        assert CALL_NOTE[item["start"] : item["end"]] == item["quote"]

    # On demand: the same honest answer, not an error and not an empty analysis; one more attempt.
    again = client.post(f"{path}/analyze")
    assert again.status_code == 200
    assert (again.json()["status"], again.json()["degraded"]) == ("waiting_for_llm", True)
    assert again.json()["waiting"]["attempts"] == 2


def test_an_outage_then_recovery_analyses_every_pending_activity_exactly_once(
    tenant, publisher, service, openai_server, runtime, clock, make_client
) -> None:
    activities = [create_activity(tenant, body=f"Note {i}. We will call back on Friday.") for i in range(3)]
    events = [e for a in activities for e in activity_events(publisher, a["id"])]

    openai_server.fault = Reply.error(500, "model crashed")
    # Every message acknowledged (none retried into the DLQ), every activity waiting for the model.
    assert deliver(service, events) == {"batchItemFailures": []}
    waiting = rows(runtime, tenant.id, ConversationWaiting)
    assert sorted(str(w.activity_id) for w in waiting) == sorted(a["id"] for a in activities)
    assert all(w.reason.startswith("llm_") for w in waiting), [w.reason for w in waiting]  # e.g. llm_circuit_open
    report = service.sweep(organization_ids=[tenant.id])  # still down: it stops at once
    assert (report.llm_available, report.analysed, report.still_unanalysed) == (False, 0, 3)
    answer = make_client(service).get(f"/api/v1/ai/conversation/activities/{activities[0]['id']}").json()
    assert (answer["status"], answer["degraded"]) == ("waiting_for_llm", True)

    openai_server.fault = None
    openai_server.responder = quoting_responder
    clock.now += 3600  # past the breaker's reset time: the next call is its probe
    calls_before_sweep = len(openai_server.requests_to("chat"))
    report = service.sweep(organization_ids=[tenant.id])
    assert (report.llm_available, report.complete, report.analysed) == (True, True, 3)
    mine = rows(runtime, tenant.id, ConversationAnalysisRow)
    assert sorted(str(r.activity_id) for r in mine) == sorted(a["id"] for a in activities)
    assert {r.trigger for r in mine} == {"sweep"}
    assert rows(runtime, tenant.id, ConversationWaiting) == []

    # Late redeliveries and another sweep change nothing: each analysed exactly once.
    assert deliver(service, events) == {"batchItemFailures": []}
    assert service.sweep(organization_ids=[tenant.id]).analysed == 0
    assert len(rows(runtime, tenant.id, ConversationAnalysisRow)) == 3
    assert len(openai_server.requests_to("chat")) - calls_before_sweep == 3


def analysed_texts(requests: list[RecordedRequest]) -> list[str]:
    """The activity text each analysis request asked about, in order."""
    found = [re.search(r"<<<\n(.*)\n>>>", r.messages[-1]["content"], re.S) for r in requests]
    return [m.group(1).strip() for m in found if m is not None]


def test_the_sweep_tries_new_activities_first_and_the_texts_the_model_keeps_failing_on_least_recently_tried_first(
    tenant, service, openai_server, make_client
) -> None:
    """Texts the model cannot read must not use up every sweep's time while the others wait."""
    stubborn = [create_activity(tenant, body=f"Stubborn note {n}. Unreadable for this model.") for n in "AB"]

    def responder(request: RecordedRequest) -> Reply:
        if any("Stubborn note" in str(m.get("content")) for m in request.messages):  # its repair round too
            return Reply.text("Sorry, I cannot help with that.")  # not JSON: this text only
        return quoting_responder(request)

    openai_server.responder = responder
    first = service.sweep(organization_ids=[tenant.id])
    assert (first.llm_available, first.analysed, first.failed) == (True, 0, 2)
    # B is tried once more on demand: A is now the least recently tried.
    again = make_client(service).post(f"/api/v1/ai/conversation/activities/{stubborn[1]['id']}/analyze").json()
    assert (again["status"], again["waiting"]["reason"]) == ("waiting_for_llm", "llm_output_invalid")
    fresh = [create_activity(tenant, body=f"Fresh note {n}. Send the deck tomorrow.") for n in range(3)]

    before = len(openai_server.requests_to("chat"))
    second = service.sweep(organization_ids=[tenant.id])
    assert (second.analysed, second.failed) == (3, 2)
    order = analysed_texts(openai_server.requests_to("chat")[before:])
    prefixes = [text.split(".")[0] for text in order]
    assert sorted(prefixes[:3]) == [f"Fresh note {n}" for n in range(3)]  # never tried: first
    # Then each stubborn text once (the repair round may ask a second time), least recently tried first.
    assert list(dict.fromkeys(prefixes[3:])) == ["Stubborn note A", "Stubborn note B"]
    assert {f["id"] for f in fresh} <= {
        str(r.activity_id) for r in rows(service.runtime, tenant.id, ConversationAnalysisRow)
    }


# --- analyze-text, chunks, isolation ----------------------------------------------------------------


def test_analyze_text_stores_nothing(tenant, service, openai_server, runtime, make_client, make_service, dead_llm_url):  # type: ignore[no-untyped-def]
    draft = "Hi Sam, I'll send the contract by Friday. Our price is $12,000 per year."
    openai_server.script(
        Reply.json_object(
            {
                "summary": "A draft promising the contract by Friday.",
                "action_items": [
                    {
                        "description": "Send the contract",
                        "owner": "us",
                        "due_date": "2026-11-20",
                        "quote": "I'll send the contract by Friday.",
                    },
                    {"description": "Invented", "owner": "us", "quote": "We will give you a 50% discount"},
                ],
                "sentiment": {"score": 0.3, "label": "positive"},
            }
        )
    )
    client = make_client(service)
    body = {"text": draft, "type": "email", "direction": "outbound", "occurred_at": "2026-11-18T09:00:00Z"}
    answer = client.post("/api/v1/ai/conversation/analyze-text", json=body).json()
    assert (answer["status"], answer["stored"], answer["degraded"]) == ("analysed", False, False)
    assert [a["quote"] for a in answer["analysis"]["action_items"]] == ["I'll send the contract by Friday"]
    assert [d["quote"] for d in answer["dropped"]] == ["We will give you a 50% discount"]
    assert answer["rules"]["action_items"][0]["due_date"] == "2026-11-20"
    assert rows(runtime, tenant.id, ConversationAnalysisRow) == []
    assert rows(runtime, tenant.id, PendingAction) == []

    down = make_client(make_service(dead_llm_url)).post("/api/v1/ai/conversation/analyze-text", json=body).json()
    assert (down["status"], down["degraded"], down["analysis"]) == ("not_analysed", True, None)
    assert down["message"] == "not analysed yet: the language model is unavailable"
    assert [m["amount"] for m in down["rules"]["money"]] == [12000.0]

    bad = client.post("/api/v1/ai/conversation/analyze-text", json={"text": ""})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_error"


def test_a_long_text_is_analysed_in_chunks_and_merged(
    tenant, publisher, make_service, openai_server, runtime, settings, db
):  # type: ignore[no-untyped-def]
    small = Runtime(settings.model_copy(update={"conversation_chunk_chars": 600}), db=db, publisher=publisher)
    service = make_service(runtime_=small)
    paragraphs = [f"Paragraph {i}: the customer asked about feature {i} and we will follow up." for i in range(20)]
    activity = create_activity(tenant, body="\n\n".join(paragraphs))
    openai_server.responder = quoting_responder
    assert deliver(service, activity_events(publisher, activity["id"])) == {"batchItemFailures": []}
    chats = len(openai_server.requests_to("chat"))
    assert chats >= 3
    (row,) = rows(runtime, tenant.id, ConversationAnalysisRow)
    assert row.chunks == chats
    points = row.analysis["key_points"]
    assert len(points) == chats  # one per chunk, each found where it is in the whole text
    text = "\n\n".join(paragraphs)
    assert all(text[p["start"] : p["end"]] == p["quote"] for p in points)
    assert [p["start"] for p in points] == sorted(p["start"] for p in points)


def test_another_organization_sees_nothing(tenant, make_tenant, crm, publisher, service, openai_server, make_client):  # type: ignore[no-untyped-def]
    activity = create_activity(tenant, crm)
    openai_server.script(Reply.json_object(good_analysis()))
    deliver(service, activity_events(publisher, activity["id"]))
    other = make_tenant("Other")
    response = make_client(service, other.org.api_key).get(f"/api/v1/ai/conversation/activities/{activity['id']}")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_the_content_hash_in_sql_is_the_one_in_python(tenant, runtime) -> None:  # type: ignore[no-untyped-def]
    activity = create_activity(tenant, body="Caf\u00e9 na\u00efve \u2014 \u201cquoted\u201d")
    with runtime.db.organization_scope(tenant.id) as session:
        snapshot = load_activity(session, uuid.UUID(activity["id"]))
        count = session.scalar(select(func.count()).select_from(ConversationAnalysisRow))
    assert snapshot is not None and count == 0
    expected = content_hash_of("call", "outbound", "2026-11-18", "Call with Priya", activity["body"])
    assert snapshot.content_hash == expected


def test_the_deal_is_left_alone_when_the_text_names_no_known_stage(
    tenant, crm, publisher, service, openai_server, runtime
):  # type: ignore[no-untyped-def]
    activity = create_activity(tenant, crm)
    analysis = good_analysis(
        deal={"stage": {"stage": "Legal review", "quote": "We agreed to move this to Negotiation"}}
    )
    analysis["contact_facts"] = []
    openai_server.script(Reply.json_object(analysis))
    deliver(service, activity_events(publisher, activity["id"]))
    actions = rows(runtime, tenant.id, PendingAction)
    assert {a.action for a in actions} == {"create_task"}
    with runtime.db.organization_scope(tenant.id) as session:
        assert session.get(Deal, uuid.UUID(crm["deal"]["id"])).version == 1  # type: ignore[union-attr]


def test_with_the_feature_switched_off_nothing_is_analysed_until_it_is_on(
    tenant, crm, publisher, make_service, openai_server, runtime, settings, db, make_client
) -> None:
    off = Runtime(settings.model_copy(update={"ai_conversation_enabled": False}), db=db, publisher=publisher)
    service = make_service(runtime_=off)
    activity = create_activity(tenant, crm)
    assert deliver(service, activity_events(publisher, activity["id"])) == {"batchItemFailures": []}  # acknowledged
    assert service.on_schedule({"job": "sweep"}, None) == {"disabled": "AI_CONVERSATION_ENABLED is false"}
    response = make_client(service).get(f"/api/v1/ai/conversation/activities/{activity['id']}")
    assert response.status_code == 503 and response.json()["error"]["code"] == "feature_disabled"
    assert openai_server.requests_to("chat") == []

    openai_server.script(Reply.json_object(good_analysis()))
    report = make_service().sweep(organization_ids=[tenant.id])  # switched on: the sweep catches up
    assert (report.analysed, report.llm_available) == (1, True)
    assert len(rows(runtime, tenant.id, ConversationAnalysisRow)) == 1


def test_two_deliveries_at_once_store_one_analysis_and_one_set_of_proposals(
    tenant, crm, publisher, service, openai_server, runtime
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    activity = create_activity(tenant, crm)
    events = activity_events(publisher, activity["id"])
    openai_server.responder = lambda request: Reply.json_object(good_analysis(), delay_s=0.2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: deliver(service, events), range(2)))
    assert results == [{"batchItemFailures": []}] * 2
    (row,) = rows(runtime, tenant.id, ConversationAnalysisRow)
    assert sorted(row.proposal_ids) == sorted(str(a.id) for a in rows(runtime, tenant.id, PendingAction))
    assert len(row.proposal_ids) == 4  # deal, contact, two tasks: once
