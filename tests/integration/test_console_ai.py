"""The console's AI actions over HTTP (no browser): bad input is a clear 4xx page and changes
nothing, a form without the session's CSRF token is refused, another organization's card is a
404, and a page render never calls the language model."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from okyaku.recommendations.models import Recommendation
from tests.conftest import STAGES
from tests.integration import test_console_writes
from tests.integration.test_console import sign_in

services = test_console_writes.services
console = test_console_writes.console


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
