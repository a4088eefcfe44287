"""Fixtures shared by the integration tests of one feature and the real-model tests of it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from okyaku.config import Settings
from okyaku.console.app import create_console_app
from okyaku.console.services import ConsoleServices, console_services
from okyaku.console.sessions import SessionSigner
from okyaku.crm import schemas
from okyaku.crm.records import ACTIVITY_SPEC, CONTACT_SPEC, ActivityService, RecordService
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization
from tests.integration.recommendations_support import Clock, Scenario
from tests.support.hashing_embedder import HashingEmbedder


# The console over HTTP (no browser), for every console test and the agents tests that look at it;
# a module may override ``services`` (test_console_insights does) and ``console`` follows it.
@pytest.fixture
def services(runtime, make_gateway, openai_server) -> ConsoleServices:
    return console_services(
        runtime,
        llm=make_gateway(openai_server.base_url),
        signer=SessionSigner("test-secret", ttl_s=3600),
        embedder=HashingEmbedder(),
        explanations="template",
    )


@pytest.fixture
def console(services) -> TestClient:
    with TestClient(create_console_app(services), base_url="http://testserver", follow_redirects=False) as client:
        yield client


@pytest.fixture
def week_with_activity(tenant: Any, pipeline: dict[str, Any]) -> date:
    stages = {s["name"]: s["id"] for s in pipeline["stages"]}
    now = datetime.now(UTC)
    for i, amount in enumerate(("12000", "30500")):
        deal = tenant.client.post(
            "/api/v1/deals", json={"name": f"Won {i}", "amount": amount, "pipeline_id": pipeline["id"]}
        ).json()
        assert (
            tenant.client.patch(f"/api/v1/deals/{deal['id']}", json={"stage_id": stages["Closed Won"]}).status_code
            == 200
        )
    for i in range(5):
        tenant.client.post(
            "/api/v1/activities", json={"type": "call", "subject": f"call {i}", "occurred_at": now.isoformat()}
        )
    return now.date() - timedelta(days=now.weekday())


@pytest.fixture
def lead(pg, db):
    runtime = Runtime(Settings(database_url=pg.app_url), db=db, publisher=None)
    org = create_organization(db, f"LLM {uuid.uuid4().hex[:6]}", "admin@llm.example")
    with runtime.transaction(org.organization_id) as session:
        contact = RecordService(CONTACT_SPEC).create(
            session, schemas.ContactCreate(first_name="Ada", last_name="Byron", job_title="Director of Finance")
        )
        ActivityService(ACTIVITY_SPEC).create(
            session,
            schemas.ActivityCreate(
                type="meeting", contact_id=contact.id, occurred_at=datetime.now(UTC) - timedelta(days=2)
            ),
        )
    return runtime, org, contact.id


@pytest.fixture
def scenario(tenant: Any, runtime: Runtime, owner_db: Any) -> Scenario:
    """The recommendations scenario: records through the API, scores and dates set as the owner."""
    return Scenario(
        crm=tenant.client,
        runtime=runtime,
        organization_id=tenant.id,
        user_id=tenant.org.user_id,
        api_key=tenant.org.api_key,
        clock=Clock(),
        owner_db=owner_db,
    )
