"""What the service tells clients about its insides: nothing an attacker could use.

Health details need a key (usage counters an admin's), the Ollama probe is cached, database
errors carry no driver text, a role that RLS does not bind refuses to serve, and unexpected
failures stored for clients to read say only that something went wrong."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import make_url, text

from okyaku.config import Settings
from okyaku.content.api import create_content_app
from okyaku.db import Database
from okyaku.errors import DependencyUnavailable
from okyaku.runtime import Runtime
from okyaku.tenancy import create_api_key, create_user


@pytest.fixture
def health_app(runtime, make_gateway, openai_server):
    return create_content_app(runtime, make_gateway(openai_server.base_url))


def test_without_a_key_health_says_only_whether_the_ai_is_degraded(health_app, openai_server):
    with TestClient(health_app) as anonymous:
        body = anonymous.get("/api/v1/ai/health").json()
    assert body == {"status": "ok", "degraded": False}
    assert openai_server.base_url not in str(body)


def test_with_a_key_health_has_the_details_and_only_admins_see_usage(db, tenant, health_app, openai_server):
    with TestClient(health_app, headers={"Authorization": f"Bearer {tenant.org.api_key}"}) as admin:
        report = admin.get("/api/v1/ai/health").json()
    assert report["ollama"]["base_url"] == openai_server.base_url and "usage" in report
    member = create_user(db, tenant.id, f"m{uuid.uuid4().hex[:6]}@acme.example", "Member")
    key = create_api_key(db, tenant.id, "member", member.id)
    with TestClient(health_app, headers={"Authorization": f"Bearer {key}"}) as client:
        as_member = client.get("/api/v1/ai/health").json()
    assert as_member["ollama"]["reachable"] and as_member["usage"] == []
    with TestClient(health_app, headers={"Authorization": "Bearer oky_not-a-key"}) as client:
        assert client.get("/api/v1/ai/health").status_code == 401


def test_health_checks_are_cached_so_ollama_is_not_called_on_every_hit(health_app, openai_server):
    with TestClient(health_app) as anonymous:
        for _ in range(5):
            assert anonymous.get("/api/v1/ai/health").status_code == 200
    assert len(openai_server.requests_to("models")) == 1


def test_a_database_that_is_down_is_a_503_without_the_drivers_text(tenant, pg):
    url = make_url(pg.app_url).set(username="no_such_role").render_as_string(hide_password=False)
    runtime = Runtime(Settings(database_url=url), db=Database(url))
    from okyaku.crm.api import create_crm_app

    with TestClient(create_crm_app(runtime), headers={"Authorization": f"Bearer {tenant.org.api_key}"}) as client:
        response = client.get("/api/v1/contacts")
    assert response.status_code == 503
    body = response.json()
    assert body == {
        "error": {"code": "dependency_unavailable", "message": "the database is unavailable", "details": None}
    }
    assert "no_such_role" not in response.text
    runtime.db.dispose()


def test_the_owner_role_is_refused_at_start(pg):
    owner = Runtime(Settings(database_url=pg.owner_url))
    with pytest.raises(DependencyUnavailable) as refused:
        _ = owner.db
    assert refused.value.code == "database_role_unsafe"
    assert "is a superuser" in refused.value.message and "owns" in refused.value.message
    app = Runtime(Settings(database_url=pg.app_url))
    with app.db.session() as session:  # the application role passes
        assert session.execute(text("SELECT 1")).scalar() == 1
    app.db.dispose()


def test_a_role_with_bypassrls_is_refused(pg, owner_db):
    role = f"leaky_{uuid.uuid4().hex[:6]}"
    with owner_db.session() as session:
        session.execute(text(f"CREATE ROLE {role} LOGIN BYPASSRLS PASSWORD 'x'"))
    url = make_url(pg.app_url).set(username=role, password="x").render_as_string(hide_password=False)
    with pytest.raises(DependencyUnavailable, match="has BYPASSRLS"):
        _ = Runtime(Settings(database_url=url)).db


def test_an_unexpected_import_failure_is_stored_without_its_text(db, tenant, monkeypatch):
    from okyaku.crm.imports import importer

    def explode(*_args, **_kwargs):
        raise RuntimeError('relation "secret_table" at host db.internal:5432 user admin')

    monkeypatch.setattr(importer.Importer, "run", explode)
    client = TestClient(tenant.client.app, headers=dict(tenant.client.headers), raise_server_exceptions=False)
    response = client.post(
        "/api/v1/imports",
        files={"file": ("c.csv", b"first_name,email\nAda,ada@example.com\n", "text/csv")},
        data={"entity_type": "contact"},
    )
    assert response.status_code == 500
    assert "secret_table" not in response.text
    with db.organization_scope(tenant.id) as session:
        failure = session.execute(text("SELECT options FROM import_jobs ORDER BY created_at DESC LIMIT 1")).scalar()
    assert failure["failure"] == "an unexpected error occurred; the details are in the logs"
    assert "secret_table" not in str(failure)
