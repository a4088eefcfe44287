"""The console's AI actions over HTTP (no browser): bad input is a clear 4xx page and changes
nothing, a form without the session's CSRF token is refused, another organization's card is a
404, and a page render never calls the language model."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from okyaku.recommendations.models import Recommendation
from tests.conftest import STAGES
from tests.integration.test_console import sign_in


def late_deal(tenant, pipeline) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """An open deal of the signed-in user whose expected close date passed: one card to act on."""
    body = {
        "name": "Late telescope",
        "amount": "20000",
        "stage_id": pipeline["stages"][0]["id"],
        "owner_id": str(tenant.org.user_id),
        "expected_close_date": (date.today() - timedelta(days=5)).isoformat(),
    }
    response = tenant.client.post("/api/v1/deals", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def stored_card(services, tenant, deal_id: str) -> Recommendation:  # type: ignore[no-untyped-def]
    with services.runtime.db.organization_scope(tenant.org.organization_id) as session:
        card = session.scalar(
            select(Recommendation).where(
                Recommendation.entity_id == uuid.UUID(deal_id), Recommendation.rule == "deal_past_close_date"
            )
        )
        assert card is not None
        session.expunge(card)
        return card


def test_bad_feedback_and_snooze_dates_are_422_pages_and_change_nothing(
    console, services, tenant, pipeline, openai_server
) -> None:
    deal = late_deal(tenant, pipeline)
    token = sign_in(console, tenant.org.api_key)
    page = console.get(f"/console/deals/{deal['id']}")
    refresh = f"/console/deals/{deal['id']}/next-best-actions"
    assert page.status_code == 200 and f'hx-get="{refresh}"' in page.text  # the page asks for fresh cards
    fresh = console.get(refresh)
    assert fresh.status_code == 200 and "Confirm the timeline of Late telescope" in fresh.text
    assert "Confirm the timeline of Late telescope" in console.get(f"/console/deals/{deal['id']}").text  # stored
    assert openai_server.requests_to("chat") == []  # cards come from the facts, not the model
    card = stored_card(services, tenant, deal["id"])
    path = f"/console/recommendations/{card.id}/feedback"
    for form, problem in (
        ({"feedback": "snoozed", "until": date.today().isoformat()}, "later day"),
        ({"feedback": "snoozed", "until": "next tuesday"}, "choose the day"),
        ({"feedback": "applied"}, "unknown feedback"),
    ):
        answer = console.post(path, data={"csrf_token": token, **form})
        assert answer.status_code == 422 and problem in answer.text, (form, answer.status_code)
    assert stored_card(services, tenant, deal["id"]).status == "open"

    refused = console.post(path, data={"feedback": "dismissed"})  # no CSRF token
    assert refused.status_code == 403
    assert stored_card(services, tenant, deal["id"]).status == "open"

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    snoozed = console.post(path, data={"csrf_token": token, "feedback": "snoozed", "until": tomorrow, "next": "/x"})
    assert snoozed.status_code == 303  # an outside "next" is not followed: back to this console
    assert snoozed.headers["location"].startswith("/console?card_feedback=snoozed")
    assert stored_card(services, tenant, deal["id"]).status == "snoozed"


def test_another_organizations_card_and_bad_agent_starts_are_refused(
    console, services, tenant, make_tenant, pipeline
) -> None:
    theirs = make_tenant("Other")
    their_pipeline = theirs.client.post("/api/v1/pipelines", json={"name": "Sales", "stages": STAGES}).json()
    their_deal = theirs.client.post(
        "/api/v1/deals",
        json={
            "name": "Their late deal",
            "stage_id": their_pipeline["stages"][0]["id"],
            "expected_close_date": (date.today() - timedelta(days=5)).isoformat(),
        },
    ).json()
    their_card = services.recommendations.for_entity(
        theirs.org.organization_id, "deal", uuid.UUID(their_deal["id"]), theirs.org.user_id
    )["data"][0]
    token = sign_in(console, tenant.org.api_key)
    for action in ("apply", "feedback"):
        answer = console.post(
            f"/console/recommendations/{their_card['id']}/{action}", data={"csrf_token": token, "feedback": "helpful"}
        )
        assert answer.status_code == 404, action
    assert console.get(f"/console/recommendations/{their_card['id']}/explain").status_code == 404
    into_card = {"HX-Request": "true", "HX-Target": f"explain-{their_card['id']}"}
    fragment = console.get(f"/console/recommendations/{their_card['id']}/explain", headers=into_card)
    assert fragment.status_code == 404 and "<html" not in fragment.text  # a message in the card, not a page
    assert 'role="alert"' in fragment.text and "not found" in fragment.text
    with services.runtime.db.organization_scope(theirs.org.organization_id) as session:
        assert session.get(Recommendation, uuid.UUID(their_card["id"])).status == "open"

    no_id = console.post("/console/agents/lead_qualifier/run", data={"csrf_token": token, "contact_id": "x"})
    assert no_id.status_code == 422 and "which contact?" in no_id.text
    no_question = console.post("/console/agents/data_analyst/run", data={"csrf_token": token, "question": "  "})
    assert no_question.status_code == 422
    too_long = console.post("/console/agents/data_analyst/run", data={"csrf_token": token, "question": "why " * 1200})
    assert too_long.status_code == 422 and "too long" in too_long.text
    unknown = console.post("/console/agents/closer/run", data={"csrf_token": token})
    assert unknown.status_code == 404
    their_contact = theirs.client.post("/api/v1/contacts", json={"first_name": "Zed"}).json()
    foreign = console.post(
        "/console/agents/lead_qualifier/run", data={"csrf_token": token, "contact_id": their_contact["id"]}
    )
    assert foreign.status_code == 404  # not a record of this organization: no run is queued
    assert services.agents.executions(tenant.org.organization_id, agent=None, status=None, limit=5) == []


def test_where_the_policy_allows_apply_writes_at_once_and_says_so(
    services, tenant, pipeline, db, publisher, make_gateway, openai_server
) -> None:
    from fastapi.testclient import TestClient

    from okyaku.agents.models import PendingAction
    from okyaku.console.app import create_console_app
    from okyaku.console.services import console_services
    from okyaku.console.sessions import SessionSigner
    from okyaku.db.models import Task
    from okyaku.runtime import Runtime
    from tests.support.hashing_embedder import HashingEmbedder

    settings = services.runtime.settings.model_copy(update={"ai_require_approval_for_writes": False})
    relaxed = console_services(
        Runtime(settings, db=db, publisher=publisher),
        llm=make_gateway(openai_server.base_url),
        signer=SessionSigner("test-secret", ttl_s=3600),
        embedder=HashingEmbedder(),
        explanations="template",
    )
    deal = late_deal(tenant, pipeline)
    with TestClient(create_console_app(relaxed), base_url="http://testserver", follow_redirects=False) as console:
        token = sign_in(console, tenant.org.api_key)
        console.get(f"/console/deals/{deal['id']}/next-best-actions")
        card = stored_card(relaxed, tenant, deal["id"])
        here = f"/console/deals/{deal['id']}"
        applied = console.post(f"/console/recommendations/{card.id}/apply", data={"csrf_token": token, "next": here})
        assert applied.status_code == 303 and applied.headers["location"].startswith(f"{here}?applied=")
        page = console.get(applied.headers["location"].split("#")[0]).text
        assert "Applied at once (the approvals policy allows it):" in page and "create task" in page
        again = console.post(f"/console/recommendations/{card.id}/apply", data={"csrf_token": token, "next": here})
        assert again.headers["location"] == applied.headers["location"]  # the same action, not a second task
    with relaxed.runtime.db.organization_scope(tenant.org.organization_id) as session:
        [task] = session.scalars(select(Task).where(Task.deal_id == uuid.UUID(deal["id"]))).all()
        assert task.title == "Confirm the timeline with the buyer and update the close date of Late telescope"
        action = session.scalar(select(PendingAction).where(PendingAction.agent == "recommendations"))
        assert action.status == "approved" and action.auto_applied
