"""The project's template.yaml served by the local runner: a call note written through the CRM API
reaches the conversation function through the bus rule and its queue, and one delivery yields the
analysis and its pending proposals (the scripted OpenAI-compatible server stands in for Ollama)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from okyaku.config import get_settings
from okyaku.conversation.service import ConversationService
from okyaku.db import Database
from okyaku.llm import LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.local.runner import LocalRunner
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization
from tests.support.fixtures import FAST
from tests.support.openai_server import Reply, ScriptedOpenAIServer
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
NOTE = "Spoke with Raj. I'll send the order form by Friday. He confirmed we are in Negotiation now."


def use_environment(
    monkeypatch: pytest.MonkeyPatch, pg: LocalDatabase, server: ScriptedOpenAIServer, **extra: str
) -> None:
    for name, value in {
        "DATABASE_URL": pg.app_url,
        "DATABASE_MIGRATION_URL": pg.owner_url,
        "OLLAMA_BASE_URL": server.base_url,
        "OLLAMA_EMBEDDING_MODEL": "local:all-minilm-l6-v2",
        **{k.upper(): str(v) for k, v in FAST.items()},
        **extra,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CHANGE_EVENTS_QUEUE_URL", raising=False)
    get_settings.cache_clear()


def test_a_call_note_is_analysed_within_one_queue_delivery(
    pg: LocalDatabase, db: Database, openai_server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_environment(monkeypatch, pg, openai_server)
    analysis: dict[str, Any] = {
        "summary": "Raj is in negotiation; we send the order form by Friday.",
        "action_items": [
            {
                "description": "Send the order form",
                "owner": "us",
                "due_date": "2026-11-20",
                "quote": "I'll send the order form by Friday.",
            }
        ],
        "sentiment": {"score": 0.5, "label": "positive"},
        "deal": {"stage": {"stage": "Negotiation", "quote": "He confirmed we are in Negotiation now"}},
    }
    openai_server.responder = lambda request: Reply.json_object(analysis)
    org = create_organization(db, "Runner conversation", "admin@runner-conversation.example")
    headers = {"Authorization": f"Bearer {org.api_key}"}
    try:
        with (
            LocalRunner(ROOT / "template.yaml", port=0, apply_environment=False) as runner,
            httpx.Client(base_url=runner.url, headers=headers, timeout=60) as client,
        ):
            stages = [
                {"name": "Qualification", "probability": 0.2},
                {"name": "Negotiation", "probability": 0.7},
            ]
            pipeline = client.post("/api/v1/pipelines", json={"name": "Sales", "stages": stages}).json()
            deal = client.post("/api/v1/deals", json={"name": "Quantia", "pipeline_id": pipeline["id"]}).json()
            activity = client.post(
                "/api/v1/activities",
                json={"type": "call", "body": NOTE, "occurred_at": "2026-11-18T10:00:00Z", "deal_id": deal["id"]},
            )
            assert activity.status_code == 201, activity.text
            path = f"/api/v1/ai/conversation/activities/{activity.json()['id']}"

            def analysed() -> dict[str, Any] | None:
                answer = client.get(path).json()
                return answer if answer.get("status") == "analysed" else None

            answer = wait_for(analysed, "the analysis", 60)
            assert answer["history"][0]["trigger"] == "event"
            assert {p["action"] for p in answer["proposals"]} == {"create_task", "update_deal"}
            assert all(p["status"] == "pending" for p in answer["proposals"])
            approvals = client.get("/api/v1/ai/approvals", params={"agent": "conversation"}).json()
            assert {a["action"] for a in approvals["data"]} == {"create_task", "update_deal"}
            assert client.get(f"/api/v1/deals/{deal['id']}").json()["stage_id"] == deal["stage_id"]
    finally:
        get_settings.cache_clear()


def conversation_queue(runner: LocalRunner) -> dict[str, Any]:
    (queue,) = [q for q in runner.status()["queues"] if q["function"] == "ConversationFunction"]
    return queue


def test_deliveries_during_an_outage_wait_for_the_model_none_dead_lettered_and_the_sweep_analyses_them(
    pg: LocalDatabase,
    db: Database,
    openai_server: ScriptedOpenAIServer,
    dead_llm_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No model at all (nothing listens at OLLAMA_BASE_URL), as on a plain `make run` without Ollama:
    every delivery is acknowledged, the activities wait for the model, the DLQ stays empty."""
    use_environment(monkeypatch, pg, openai_server, OLLAMA_BASE_URL=dead_llm_url)
    org = create_organization(db, "Runner outage", "admin@runner-outage.example")
    try:
        with (
            LocalRunner(ROOT / "template.yaml", port=0, apply_environment=False, retry_delay_s=0.05) as runner,
            httpx.Client(base_url=runner.url, headers={"Authorization": f"Bearer {org.api_key}"}, timeout=60) as client,
        ):
            ids = []
            for day in range(1, 7):  # more than one batch (BatchSize 2)
                note = {"type": "note", "body": NOTE, "occurred_at": f"2026-11-{day:02d}T10:00:00Z"}
                created = client.post("/api/v1/activities", json=note)
                assert created.status_code == 201, created.text
                ids.append(created.json()["id"])

            def all_waiting() -> list[dict[str, Any]] | None:
                answers = [client.get(f"/api/v1/ai/conversation/activities/{i}").json() for i in ids]
                settled = conversation_queue(runner)["pending"] == 0
                return answers if settled and all(a["status"] == "waiting_for_llm" for a in answers) else None

            answers = wait_for(all_waiting, "every activity to wait for the model", 60)
            assert all(a["degraded"] and a["waiting"]["attempts"] == 1 for a in answers)  # tried once each
            assert answers[0]["rules"]["action_items"][0]["due_date"] == "2026-11-06"  # the rules floor speaks
            queue = conversation_queue(runner)
            assert (queue["delivered"], queue["retried"]) == (len(ids), 0)
            assert [d for d in runner.status()["dead_letters"] if d["function_id"] == "ConversationFunction"] == []

            openai_server.responder = lambda request: Reply.json_object(
                {"summary": "Order form by Friday.", "sentiment": {"score": 0.4, "label": "positive"}}
            )
            # The model is back: the sweep the schedule runs, for this organization only (the test
            # database holds others').
            back = get_settings().model_copy(update={"ollama_base_url": openai_server.base_url})
            llm = LLMGateway.from_settings(back)
            try:
                report = ConversationService(Runtime(back, db=db), llm).sweep(organization_ids=[org.organization_id])
            finally:
                llm.close()
            assert (report.llm_available, report.analysed) == (True, len(ids)), report
            for activity_id in ids:
                answer = client.get(f"/api/v1/ai/conversation/activities/{activity_id}").json()
                assert (answer["status"], answer["waiting"]) == ("analysed", None)
                assert [h["trigger"] for h in answer["history"]] == ["sweep"]
            assert len(openai_server.requests_to("chat")) == len(ids)  # each analysed exactly once
    finally:
        get_settings.cache_clear()
