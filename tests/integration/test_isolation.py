"""Row-level security: one organization never sees, changes or deletes another's rows."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from okyaku.db.models import TENANT_TABLES


@pytest.fixture
def two_tenants(make_tenant):
    return make_tenant("Alpha"), make_tenant("Beta")


def test_api_answers_404_for_another_organizations_ids(two_tenants):
    alpha, beta = two_tenants
    company = alpha.client.post("/api/v1/companies", json={"name": "Alpha Secret"}).json()
    url = f"/api/v1/companies/{company['id']}"
    assert beta.client.get(url).status_code == 404
    assert beta.client.patch(url, json={"name": "Hijacked"}).status_code == 404
    assert beta.client.delete(url).status_code == 404
    assert beta.client.get("/api/v1/companies").json()["data"] == []
    assert beta.client.get("/api/v1/companies", params={"q": "secret"}).json()["data"] == []
    assert alpha.client.get(url).json()["name"] == "Alpha Secret"


def test_cannot_link_to_another_organizations_record(two_tenants):
    alpha, beta = two_tenants
    company = alpha.client.post("/api/v1/companies", json={"name": "Alpha Co"}).json()
    response = beta.client.post("/api/v1/contacts", json={"first_name": "Eve", "company_id": company["id"]})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "company_id"


def test_sql_level_isolation_for_the_app_role(db, two_tenants):
    alpha, beta = two_tenants
    company = alpha.client.post("/api/v1/companies", json={"name": "Alpha Only"}).json()
    with db.organization_scope(beta.id) as session:
        assert (
            session.execute(text("SELECT count(*) FROM companies WHERE id = :id"), {"id": company["id"]}).scalar() == 0
        )
        updated = session.execute(text("UPDATE companies SET name = 'x' WHERE id = :id"), {"id": company["id"]})
        assert updated.rowcount == 0
        deleted = session.execute(text("DELETE FROM companies WHERE id = :id"), {"id": company["id"]})
        assert deleted.rowcount == 0
    with pytest.raises(ProgrammingError, match="row-level security"), db.organization_scope(beta.id) as session:
        session.execute(
            text("INSERT INTO companies (organization_id, name) VALUES (:org, 'smuggled')"), {"org": str(alpha.id)}
        )
    with db.session() as session:  # no organization set: nothing at all is visible
        assert session.execute(text("SELECT count(*) FROM companies")).scalar() == 0
        assert session.execute(text("SELECT count(*) FROM api_keys")).scalar() == 0


def test_app_role_owns_nothing_and_rls_is_forced(db, owner_db):
    with db.session() as session:
        role = session.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")).one()
        assert tuple(role) == (False, False)
    with owner_db.session() as session:
        rows = session.execute(
            text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) "
                "FROM pg_class c WHERE c.relname = ANY(:tables)"
            ),
            {"tables": [*TENANT_TABLES, "organizations"]},
        ).all()
    assert len(rows) == len(TENANT_TABLES) + 1
    for name, enabled, forced, owner in rows:
        assert enabled and forced, name
        assert owner != "okyaku_app", name


def test_api_key_is_stored_hashed(owner_db, tenant):
    with owner_db.session() as session:
        stored = session.execute(
            text("SELECT key_hash, key_prefix FROM api_keys WHERE organization_id = :o"), {"o": str(tenant.id)}
        ).one()
    assert tenant.org.api_key not in stored.key_hash
    assert len(stored.key_hash) == 64 and tenant.org.api_key.startswith(stored.key_prefix)


def test_guessing_ids_across_entities_always_404(two_tenants, pipeline):
    _alpha, beta = two_tenants
    del pipeline  # belongs to yet another tenant; ids of every kind stay invisible
    for path in ("contacts", "deals", "activities", "tasks", "pipelines"):
        assert beta.client.get(f"/api/v1/{path}/{uuid.uuid4()}").status_code == 404


def test_every_table_with_an_organization_has_forced_rls_and_a_tenant_policy(owner_db):
    """Feature migrations add tables too: none may hold organization rows without isolation."""
    with owner_db.session() as session:
        rows = session.execute(
            text(
                "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, "
                "EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) "
                "FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE a.attname = 'organization_id' AND c.relkind = 'r' AND n.nspname = 'public'"
            )
        ).all()
    assert len(rows) > len(TENANT_TABLES)  # the feature tables are there too
    unprotected = [name for name, enabled, forced, has_policy in rows if not (enabled and forced and has_policy)]
    assert unprotected == []
