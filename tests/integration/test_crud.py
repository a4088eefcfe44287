"""CRUD, validation, listing and concurrency through the crm_api app."""

from __future__ import annotations

import uuid

import pytest

ENTITY_BODIES = {
    "companies": ({"name": "Acme Corp", "industry": "Software", "employee_count": 120}, {"city": "Lyon"}),
    "contacts": (
        {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@acme.io"},
        {"job_title": "CTO"},
    ),
    "tasks": ({"title": "Call back", "priority": "high"}, {"status": "done"}),
    "activities": ({"type": "note", "body": "Met at the fair"}, {"subject": "Fair"}),
}


@pytest.mark.parametrize("path", list(ENTITY_BODIES))
def test_create_read_update_list_delete(tenant, path):
    client = tenant.client
    create, patch = ENTITY_BODIES[path]
    created = client.post(f"/api/v1/{path}", json=create)
    assert created.status_code == 201, created.text
    record = created.json()
    assert record["version"] == 1
    assert created.headers["ETag"] == '"1"'

    fetched = client.get(f"/api/v1/{path}/{record['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == record

    updated = client.patch(f"/api/v1/{path}/{record['id']}", json=patch)
    assert updated.status_code == 200, updated.text
    for key, value in patch.items():
        assert updated.json()[key] == value
    assert updated.json()["version"] == 2

    listed = client.get(f"/api/v1/{path}")
    assert [r["id"] for r in listed.json()["data"]] == [record["id"]]

    assert client.delete(f"/api/v1/{path}/{record['id']}").status_code == 204
    gone = client.get(f"/api/v1/{path}/{record['id']}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "not_found"


def test_task_completion_is_stamped_and_cleared(tenant):
    task = tenant.client.post("/api/v1/tasks", json={"title": "Send quote"}).json()
    done = tenant.client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "done"}).json()
    assert done["completed_at"] is not None
    reopened = tenant.client.patch(f"/api/v1/tasks/{task['id']}", json={"status": "open"}).json()
    assert reopened["completed_at"] is None


def test_validation_errors_have_field_details(tenant):
    response = tenant.client.post(
        "/api/v1/contacts", json={"email": "not-an-email", "lifecycle_stage": "alien", "shoe_size": 43}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    fields = {d["field"] for d in error["details"]}
    assert {"email", "lifecycle_stage", "shoe_size"} <= fields


def test_contact_needs_an_identity(tenant):
    response = tenant.client.post("/api/v1/contacts", json={"job_title": "CEO"})
    assert response.status_code == 422
    assert "first_name" in response.json()["error"]["details"][0]["message"]


def test_unknown_reference_is_a_field_error(tenant):
    response = tenant.client.post("/api/v1/contacts", json={"first_name": "Bo", "company_id": str(uuid.uuid4())})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "company_id"


def test_unknown_ids_and_malformed_ids(tenant):
    assert tenant.client.get(f"/api/v1/companies/{uuid.uuid4()}").status_code == 404
    malformed = tenant.client.get("/api/v1/companies/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["error"]["details"][0]["field"] == "record_id"


def test_missing_or_bad_key_is_401(tenant):
    from fastapi.testclient import TestClient

    anonymous = TestClient(tenant.client.app)
    response = anonymous.get("/api/v1/contacts")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    wrong = anonymous.get("/api/v1/contacts", headers={"Authorization": "Bearer oky_nope"})
    assert wrong.status_code == 401


def test_stale_version_is_409_not_a_lost_update(tenant):
    company = tenant.client.post("/api/v1/companies", json={"name": "Initech"}).json()
    first = tenant.client.patch(
        f"/api/v1/companies/{company['id']}", json={"city": "Austin"}, headers={"If-Match": '"1"'}
    )
    assert first.status_code == 200
    second = tenant.client.patch(
        f"/api/v1/companies/{company['id']}", json={"city": "Dallas"}, headers={"If-Match": '"1"'}
    )
    assert second.status_code == 409
    assert second.json()["error"]["details"]["current_version"] == 2
    in_body = tenant.client.patch(f"/api/v1/companies/{company['id']}", json={"city": "Dallas", "version": 1})
    assert in_body.status_code == 409
    assert tenant.client.get(f"/api/v1/companies/{company['id']}").json()["city"] == "Austin"


def test_concurrent_updates_conflict_at_the_database(db, tenant):
    """Two writers read version 1; the second UPDATE ... WHERE version = 1 finds nothing: 409."""
    from okyaku.crm.api import companies
    from okyaku.crm.schemas import CompanyUpdate
    from okyaku.errors import Conflict

    company = tenant.client.post("/api/v1/companies", json={"name": "Hooli"}).json()
    company_id = uuid.UUID(company["id"])
    with db.organization_scope(tenant.id) as slow:
        stale = companies.get(slow, company_id)  # reads version 1
        assert tenant.client.patch(f"/api/v1/companies/{company_id}", json={"city": "Palo Alto"}).status_code == 200
        with pytest.raises(Conflict):
            companies.update(slow, stale.id, CompanyUpdate(city="Menlo Park"))
    assert tenant.client.get(f"/api/v1/companies/{company_id}").json()["city"] == "Palo Alto"


def test_patch_without_change_keeps_version(tenant):
    company = tenant.client.post("/api/v1/companies", json={"name": "Umbrella"}).json()
    same = tenant.client.patch(f"/api/v1/companies/{company['id']}", json={"name": "Umbrella"})
    assert same.json()["version"] == 1


def test_custom_properties_merge_and_remove(tenant):
    contact = tenant.client.post(
        "/api/v1/contacts", json={"email": "c@x.io", "custom_properties": {"plan": "pro", "seats": 5}}
    ).json()
    patched = tenant.client.patch(
        f"/api/v1/contacts/{contact['id']}", json={"custom_properties": {"seats": 7, "plan": None}}
    ).json()
    assert patched["custom_properties"] == {"seats": 7}


def test_pagination_sort_filters_and_search(tenant):
    client = tenant.client
    acme = client.post("/api/v1/companies", json={"name": "Acme"}).json()
    for i in range(7):
        client.post(
            "/api/v1/contacts",
            json={
                "first_name": f"Person{i}",
                "last_name": f"Zed{i}",
                "email": f"p{i}@acme.io",
                "lifecycle_stage": "customer" if i % 2 else "lead",
                "company_id": acme["id"] if i < 3 else None,
            },
        )
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, "sort": "-last_name"}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/contacts", params=params).json()
        seen.extend(r["last_name"] for r in page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted((f"Zed{i}" for i in range(7)), reverse=True)

    customers = client.get("/api/v1/contacts", params={"lifecycle_stage": "customer"}).json()["data"]
    assert {c["first_name"] for c in customers} == {"Person1", "Person3", "Person5"}
    at_acme = client.get("/api/v1/contacts", params={"company_id": acme["id"]}).json()["data"]
    assert len(at_acme) == 3
    found = client.get("/api/v1/contacts", params={"q": "person4"}).json()["data"]
    assert [c["first_name"] for c in found] == ["Person4"]


def test_listing_rejects_bad_parameters(tenant):
    bad_sort = tenant.client.get("/api/v1/contacts", params={"sort": "password"})
    assert bad_sort.status_code == 422 and bad_sort.json()["error"]["details"][0]["field"] == "sort"
    bad_cursor = tenant.client.get("/api/v1/contacts", params={"cursor": "garbage!"})
    assert bad_cursor.status_code == 422
    bad_limit = tenant.client.get("/api/v1/contacts", params={"limit": 1000})
    assert bad_limit.status_code == 422
    bad_filter = tenant.client.get("/api/v1/contacts", params={"lifecycle_stage": "martian"})
    assert bad_filter.status_code == 422


def test_openapi_is_served(tenant):
    spec = tenant.client.get("/api/v1/openapi.json").json()
    assert "/api/v1/deals/{record_id}" in spec["paths"]
    assert "DealCreate" in spec["components"]["schemas"]


def test_validation_messages_read_well(tenant):
    response = tenant.client.post("/api/v1/contacts", json={"email": "nope"})
    assert response.json()["error"]["details"] == [
        {"field": "email", "message": "not a valid email address", "type": "value_error"}
    ]


@pytest.mark.parametrize(
    ("path", "create", "field"),
    [
        ("companies", {"name": "Nully"}, "name"),
        ("tasks", {"title": "T"}, "status"),
        ("contacts", {"email": "n@x.io"}, "lifecycle_stage"),
    ],
)
def test_clearing_a_required_field_is_a_422_on_that_field(tenant, path, create, field):
    record = tenant.client.post(f"/api/v1/{path}", json=create).json()
    response = tenant.client.patch(f"/api/v1/{path}/{record['id']}", json={field: None})
    assert response.status_code == 422
    assert response.json()["error"]["details"] == [{"field": field, "message": "cannot be null", "type": "missing"}]


def test_a_tampered_cursor_is_a_422_not_a_crash(tenant):
    import base64
    import json

    tenant.client.post("/api/v1/contacts", json={"email": "c1@x.io"})
    raw = json.dumps(["-created_at", "not-a-date", str(uuid.uuid4())]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    response = tenant.client.get("/api/v1/contacts", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_value"


def test_deleting_a_company_detaches_its_contacts_and_deals_with_events(tenant, pipeline, publisher):
    client = tenant.client
    company = client.post("/api/v1/companies", json={"name": "Gone Inc"}).json()
    contact = client.post("/api/v1/contacts", json={"email": "stay@x.io", "company_id": company["id"]}).json()
    deal = client.post("/api/v1/deals", json={"name": "Stays", "company_id": company["id"]}).json()
    assert client.delete(f"/api/v1/companies/{company['id']}").status_code == 204
    after_contact = client.get(f"/api/v1/contacts/{contact['id']}").json()
    after_deal = client.get(f"/api/v1/deals/{deal['id']}").json()
    assert after_contact["company_id"] is None and after_contact["version"] == contact["version"] + 1
    assert after_deal["company_id"] is None and after_deal["version"] == deal["version"] + 1
    updates = {(str(e.entity_id), tuple(e.changed_fields)) for e in publisher.events if e.operation == "updated"}
    assert {(contact["id"], ("company_id",)), (deal["id"], ("company_id",))} <= updates


def test_deleting_a_company_with_thousands_of_contacts_detaches_all_and_loses_no_event(tenant, runtime, publisher, db):
    from okyaku.crm import schemas as crm_schemas
    from okyaku.crm.records import COMPANY_SPEC, CONTACT_SPEC, RecordService
    from okyaku.events.outbox import PUBLISH_INLINE_LIMIT
    from okyaku.events.relay import relay_pending

    count = PUBLISH_INLINE_LIMIT + 200  # more events than one response publishes inline
    with runtime.transaction(tenant.id) as session:
        company = RecordService(COMPANY_SPEC).create(session, crm_schemas.CompanyCreate(name="Big Co"))
        contacts = RecordService(CONTACT_SPEC)
        for i in range(count):
            contacts.create(session, crm_schemas.ContactCreate(first_name=f"C{i}", company_id=company.id))
    relay_pending(db, publisher)  # the creations, published by the relay too (more than the inline limit)
    publisher.events.clear()
    assert tenant.client.delete(f"/api/v1/companies/{company.id}").status_code == 204
    assert publisher.events == []  # left to the relay rather than holding up the response

    relay_pending(db, publisher)
    updates = [e for e in publisher.events if e.entity_type == "contact"]
    assert len(updates) == count and len({e.entity_id for e in updates}) == count
    assert {(e.operation, tuple(e.changed_fields), e.version) for e in updates} == {("updated", ("company_id",), 2)}
    assert [e.entity_id for e in publisher.events if e.entity_type == "company"] == [company.id]
    listed = tenant.client.get("/api/v1/contacts", params={"limit": 200}).json()["data"]
    assert all(c["company_id"] is None and c["version"] == 2 for c in listed)
    relay_pending(db, publisher)
    assert len(publisher.events) == count + 1  # published once
