"""The console's conversation, anomaly, insight and notification pages over HTTP without a browser
(no JavaScript): Analyze now and Summarize as plain form posts while the language model fails, bad
input and another organization's ids, the anomaly transitions' refusals, Scan now and Compute last
week now, and the features switched off."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from html import escape

import pytest

from okyaku.anomalies.detectors import Finding
from okyaku.anomalies.store import notify_new, upsert_findings
from okyaku.console.app import create_console_app
from okyaku.console.services import console_services
from okyaku.console.sessions import SessionSigner
from tests.integration.test_agents_runs import make_crm
from tests.integration.test_console import sign_in
from tests.support.hashing_embedder import HashingEmbedder
from tests.support.openai_server import Reply


@pytest.fixture
def services(runtime, make_gateway, openai_server):  # type: ignore[no-untyped-def]
    """The console's services on a gateway without retries whose breaker does not open: "the model
    fails, then answers" is the next request."""
    return console_services(
        runtime,
        llm=make_gateway(openai_server.base_url, max_retries=0, breaker_failure_threshold=1000),
        signer=SessionSigner("test-secret", ttl_s=3600),
        embedder=HashingEmbedder(),
        explanations="template",
    )


def plant(services, tenant, deal_id: str) -> str:  # type: ignore[no-untyped-def]
    finding = Finding(
        type="stale_deal",
        entity_type="deal",
        entity_id=uuid.UUID(deal_id),
        entity_key=f"deal:{deal_id}",
        title="No activity on Aurora telescopes for 21 days",
        description="Quiet for 21 days.",
        severity="high",
        evidence={"idle_days": 21.0},
    )
    now = datetime.now(UTC)
    with services.runtime.db.organization_scope(tenant.id) as session:
        created = upsert_findings(session, [finding], now, dismiss_snooze_days=30).created
        notify_new(session, created, now)
    return str(created[0])


def test_analyze_now_and_summarize_without_javascript_while_the_model_fails(
    console, services, tenant, pipeline, openai_server, make_tenant
) -> None:  # type: ignore[no-untyped-def]
    crm = make_crm(tenant, pipeline)
    deal = crm["deal"]["id"]
    token = sign_in(console, tenant.org.api_key)
    page = console.get(f"/console/deals/{deal}")
    assert "Not analysed yet" in page.text and "Summarize" in page.text
    activity = page.text.split('id="insights-')[1].split('"')[0]

    openai_server.fault = Reply.error(500, "model crashed")
    here = f"/console/deals/{deal}"
    answer = console.post(
        f"/console/activities/{activity}/analyze", data={"csrf_token": token, "next": here, "force": "false"}
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{here}?notice=not_analysed#insights-{activity}"
    after = console.get(f"{here}?notice=not_analysed")
    assert "Not analysed: the language model is unavailable" in after.text
    assert "Waiting for the language model" in after.text and "Sentiment:" not in after.text

    # The model back: analysed. Down again, "Analyze again" keeps the stored analysis and says so.
    openai_server.fault = None
    openai_server.script(
        Reply.json_object({"summary": "Budget approved.", "sentiment": {"score": 0.4, "label": "positive"}})
    )
    answer = console.post(
        f"/console/activities/{activity}/analyze", data={"csrf_token": token, "next": here, "force": "false"}
    )
    assert answer.headers["location"] == f"{here}?notice=analysed#insights-{activity}"
    openai_server.fault = Reply.error(500, "model crashed")
    again = console.post(
        f"/console/activities/{activity}/analyze", data={"csrf_token": token, "next": here, "force": "true"}
    )
    assert again.headers["location"] == f"{here}?notice=not_reanalysed#insights-{activity}"
    kept = console.get(f"{here}?notice=not_reanalysed").text
    assert "The stored analysis is shown." in kept and "Sentiment: positive (+0.4)" in kept
    assert "Waiting for the language model" not in kept

    # Summarize: nothing to summarize is a 422 page; a draft without the model gives the rules' findings.
    empty = console.post("/console/activities/summarize", data={"csrf_token": token, "next": here, "body": " "})
    assert empty.status_code == 422 and "nothing to summarize" in empty.text
    draft = console.post(
        "/console/activities/summarize",
        data={"csrf_token": token, "next": here, "type": "call", "body": "We will send the quote by 2026-12-20."},
    )
    assert draft.status_code == 200 and "Waiting for the language model" in draft.text
    assert "<mark" in draft.text and "2026-12-20" in draft.text

    # Without the form's token: refused; another organization's activity: not found.
    refused = console.post(f"/console/activities/{activity}/analyze", data={"next": here})
    assert refused.status_code == 403
    other = make_tenant("Other")
    theirs = other.client.post("/api/v1/activities", json={"type": "note", "subject": "Theirs", "body": "Secret."})
    openai_server.fault = None
    missing = console.post(f"/console/activities/{theirs.json()['id']}/analyze", data={"csrf_token": token})
    assert missing.status_code == 404


def test_anomaly_transitions_refused_and_notifications_of_others(console, services, tenant, pipeline) -> None:  # type: ignore[no-untyped-def]
    crm = make_crm(tenant, pipeline)
    anomaly = plant(services, tenant, crm["deal"]["id"])
    token = sign_in(console, tenant.org.api_key)
    bad = console.post(f"/console/anomalies/{anomaly}/transition", data={"csrf_token": token, "action": "delete"})
    assert bad.status_code == 422
    done = console.post(
        f"/console/anomalies/{anomaly}/transition", data={"csrf_token": token, "action": "dismiss", "note": "fine"}
    )
    assert done.status_code == 303 and done.headers["location"] == f"/console/anomalies/{anomaly}?notice=dismiss"
    again = console.post(f"/console/anomalies/{anomaly}/transition", data={"csrf_token": token, "action": "resolve"})
    assert again.status_code == 409 and "cannot resolve an anomaly that is dismissed" in again.text
    assert console.get(f"/console/anomalies/{uuid.uuid4()}").status_code == 404
    assert console.post(f"/console/notifications/{uuid.uuid4()}/read", data={"csrf_token": token}).status_code == 404
    # Filters of unknown values read as "any" (a stale bookmark), not an error.
    assert console.get("/console/anomalies?type=nonsense&status=any").status_code == 200


def test_the_features_switched_off_take_their_pages_away(
    runtime, make_gateway, openai_server, tenant, pipeline
) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from okyaku.runtime import Runtime

    settings = runtime.settings.model_copy(update={"ai_conversation_enabled": False, "ai_anomalies_enabled": False})
    off = console_services(
        Runtime(settings, db=runtime.db, publisher=runtime.publisher),
        llm=make_gateway(openai_server.base_url),
        signer=SessionSigner("test-secret", ttl_s=3600),
        embedder=HashingEmbedder(),
        explanations="template",
    )
    assert off.conversation is None and off.anomalies is None
    crm = make_crm(tenant, pipeline)
    with TestClient(create_console_app(off), follow_redirects=False) as client:
        sign_in(client, tenant.org.api_key)
        page = client.get(f"/console/deals/{crm['deal']['id']}")
        assert page.status_code == 200
        assert "Not analysed yet" not in page.text and "Summarize" not in page.text and 'class="bell' not in page.text
        assert client.get("/console/anomalies").status_code == 404
        assert client.get("/console/insights").status_code == 404


def test_scan_now_and_compute_last_week_now_from_the_pages(console, services, tenant, pipeline, openai_server) -> None:  # type: ignore[no-untyped-def]
    make_crm(tenant, pipeline)  # its deal has no close date: a data gap for the scan to find
    token = sign_in(console, tenant.org.api_key)
    empty = console.get("/console/anomalies")
    assert "No anomalies match." in empty.text
    scanned = console.post("/console/anomalies/scan", data={"csrf_token": token})
    assert scanned.status_code == 303
    page = console.get(scanned.headers["location"])
    rows, total = services.anomalies.list_anomalies(tenant.id, status="open")
    assert total >= 1 and f"Scanned: {total} new anomalies." in page.text
    assert all(escape(r.title) in page.text for r in rows)

    assert "No weekly insights yet" in console.get("/console/insights").text
    openai_server.fault = Reply.error(500, "model crashed")  # the narrative falls back to the template
    computed = console.post("/console/insights/run", data={"csrf_token": token})
    assert computed.status_code == 303 and "notice=computed" in computed.headers["location"]
    week = console.get(computed.headers["location"]).text
    assert "Last week&#39;s insights computed." in week or "Last week's insights computed." in week
    assert "Degraded:" in week and "Trends" in week
    assert console.post("/console/insights/run", data={}).status_code == 403  # no CSRF token
