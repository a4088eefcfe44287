"""API keys can be revoked, a deactivated or deleted user's keys stop working, and only admins
manage access."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient
from sqlalchemy import text

from okyaku.cli import main
from okyaku.tenancy import create_api_key, create_user


def as_key(tenant, key: str) -> TestClient:
    return TestClient(tenant.client.app, headers={"Authorization": f"Bearer {key}"})


def test_an_admin_creates_and_revokes_a_key_and_the_revoked_key_stops_working(tenant):
    created = tenant.client.post("/api/v1/api-keys", json={"name": "ci"})
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["api_key"]
    assert key.startswith(body["key_prefix"]) and body["revoked_at"] is None
    with as_key(tenant, key) as client:
        assert client.get("/api/v1/contacts").status_code == 200
        listed = tenant.client.get("/api/v1/api-keys").json()
        assert {k["id"] for k in listed} >= {body["id"]} and all("api_key" not in k for k in listed)
        revoked = tenant.client.delete(f"/api/v1/api-keys/{body['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        refused = client.get("/api/v1/contacts")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
    again = tenant.client.delete(f"/api/v1/api-keys/{body['id']}")
    assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # revoking twice changes nothing


def test_a_keys_use_is_recorded_at_most_once_a_minute(owner_db, tenant):
    created = tenant.client.post("/api/v1/api-keys", json={"name": "usage"}).json()

    def last_used() -> object:
        with owner_db.session() as session:
            return session.execute(
                text("SELECT last_used_at FROM api_keys WHERE id = :id"), {"id": created["id"]}
            ).scalar()

    assert last_used() is None
    with as_key(tenant, created["api_key"]) as client:
        assert client.get("/api/v1/contacts").status_code == 200
        first = last_used()
        assert first is not None
        assert client.get("/api/v1/contacts").status_code == 200
        assert last_used() == first  # within the minute: no write
        with owner_db.session() as session:
            session.execute(
                text("UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE id = :id"),
                {"id": created["id"]},
            )
        assert client.get("/api/v1/contacts").status_code == 200
        assert last_used() > first  # type: ignore[operator]


def test_members_cannot_manage_access(db, tenant):
    member = create_user(db, tenant.id, "member@acme.example", "Mem Ber")
    key = create_api_key(db, tenant.id, "member key", member.id)
    with as_key(tenant, key) as client:
        assert client.get("/api/v1/contacts").status_code == 200  # an ordinary caller otherwise
        for method, path in [
            ("GET", "/api/v1/api-keys"),
            ("POST", "/api/v1/api-keys"),
            ("DELETE", f"/api/v1/api-keys/{uuid.uuid4()}"),
            ("GET", "/api/v1/users"),
            ("POST", f"/api/v1/users/{member.id}/deactivate"),
        ]:
            response = client.request(method, path, json={"name": "x"} if method == "POST" else None)
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"] == {
                "code": "forbidden",
                "message": response.json()["error"]["message"],
                "details": {"role": "member"},
            }


def test_a_deactivated_users_keys_stop_working(db, tenant):
    user = tenant.client.post("/api/v1/users", json={"email": "Leaver@Acme.example", "name": "Leaver"}).json()
    assert user["email"] == "leaver@acme.example" and user["role"] == "member"
    assert tenant.client.post("/api/v1/users", json={"email": "leaver@acme.example", "name": "X"}).status_code == 409
    key = tenant.client.post("/api/v1/api-keys", json={"name": "laptop", "user_id": user["id"]}).json()["api_key"]
    with as_key(tenant, key) as client:
        assert client.get("/api/v1/contacts").status_code == 200
        assert tenant.client.post(f"/api/v1/users/{user['id']}/deactivate").status_code == 204
        assert client.get("/api/v1/contacts").status_code == 401
    # and no new key can be made for them
    refused = tenant.client.post("/api/v1/api-keys", json={"name": "again", "user_id": user["id"]})
    assert refused.status_code == 422


def test_deleting_a_user_deletes_their_keys(db, owner_db, tenant):
    user = create_user(db, tenant.id, "gone@acme.example", "Gone")
    key = create_api_key(db, tenant.id, "gone's key", user.id)
    with as_key(tenant, key) as client:
        assert client.get("/api/v1/contacts").status_code == 200
        with owner_db.session() as session:
            session.execute(text("DELETE FROM users WHERE id = :id"), {"id": user.id})
        assert client.get("/api/v1/contacts").status_code == 401


def test_another_organizations_keys_and_users_are_not_found(make_tenant):
    ours, theirs = make_tenant("Ours"), make_tenant("Theirs")
    their_key = theirs.client.get("/api/v1/api-keys").json()[0]["id"]
    assert ours.client.delete(f"/api/v1/api-keys/{their_key}").status_code == 404
    their_user = theirs.client.get("/api/v1/users").json()[0]["id"]
    assert ours.client.post(f"/api/v1/users/{their_user}/deactivate").status_code == 404
    assert theirs.client.get("/api/v1/contacts").status_code == 200  # untouched


def test_the_key_commands(pg, tenant, monkeypatch, capsys):
    from okyaku.config import get_settings

    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    get_settings.cache_clear()
    try:
        assert (
            main(["key", "create", "--organization", str(tenant.id), "--name", "cli", "--user", "ADMIN@acme.example"])
            == 0
        )
        out = capsys.readouterr().out
        key = out.split("(shown once): ")[1].strip()
        key_id = out.split()[1]
        with as_key(tenant, key) as client:
            assert client.get("/api/v1/contacts").status_code == 200
            assert main(["key", "list", "--organization", str(tenant.id)]) == 0
            listing = capsys.readouterr().out
            assert key_id in listing and key[:12] in listing and key not in listing
            assert main(["key", "revoke", "--organization", str(tenant.id), key_id]) == 0
            assert client.get("/api/v1/contacts").status_code == 401
        assert main(["key", "revoke", "--organization", str(tenant.id), str(uuid.uuid4())]) == 2
    finally:
        get_settings.cache_clear()
