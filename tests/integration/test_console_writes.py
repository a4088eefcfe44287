"""Writing records from the console over HTTP (no browser): new, edit, delete of companies,
contacts and deals go through the API's services: the same row, the same change event, the same
field errors as the API; a stale edit is a conflict that shows what changed.

The flows in a real browser are in tests/browser/test_console_writes_browser.py."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.test_agents_runs import make_crm
from tests.integration.test_console import csrf_of, sign_in

VOLATILE = {"id", "created_at", "updated_at", "stage_entered_at"}


def created_id(response: Any) -> str:
    assert response.status_code == 303, response.text
    match = re.search(r"/console/\w+/([0-9a-f-]{36})\?notice=created", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in VOLATILE}


def event_of(publisher, entity_id: str) -> dict[str, Any]:
    [event] = [e for e in publisher.events if str(e.entity_id) == entity_id]
    return {
        "entity_type": event.entity_type,
        "operation": event.operation,
        "version": event.version,
        "changed_fields": sorted(event.changed_fields),
    }


def test_a_console_write_and_the_same_api_write_give_the_same_row_and_change_event(
    console, tenant, pipeline, publisher
) -> None:
    token = sign_in(console, tenant.org.api_key)
    api = tenant.client
    stages = {s["name"]: s["id"] for s in pipeline["stages"]}
    company_form = {"name": "Aurora Optics", "industry": "Optics", "employee_count": "120", "annual_revenue": "5000000"}
    company_json = {"name": "Aurora Optics", "industry": "Optics", "employee_count": 120, "annual_revenue": "5000000"}
    ours = created_id(console.post("/console/companies/new", data={**company_form, "csrf_token": token}))
    theirs = api.post("/api/v1/companies", json=company_json).json()["id"]

    contact = {"first_name": "Vera", "last_name": "Rubin", "email": "Vera@Aurora.example", "lifecycle_stage": "lead"}
    our_contact = created_id(
        console.post("/console/contacts/new", data={**contact, "company_id": ours, "csrf_token": token})
    )
    their_contact = api.post("/api/v1/contacts", json={**contact, "company_id": theirs}).json()["id"]

    deal = {
        "name": "Telescopes",
        "amount": "48000",
        "currency": "EUR",
        "expected_close_date": "2027-03-31",
        "stage_id": stages["Proposal"],
    }
    our_deal = created_id(
        console.post(
            "/console/deals/new", data={**deal, "company_id": ours, "contact_id": our_contact, "csrf_token": token}
        )
    )
    their_deal = api.post(
        "/api/v1/deals", json={**deal, "company_id": theirs, "contact_id": their_contact, "pipeline_id": pipeline["id"]}
    ).json()["id"]

    links = {ours: "C", theirs: "C", our_contact: "P", their_contact: "P"}
    for path, mine, other in (
        ("companies", ours, theirs),
        ("contacts", our_contact, their_contact),
        ("deals", our_deal, their_deal),
    ):
        a = comparable(api.get(f"/api/v1/{path}/{mine}").json())
        b = comparable(api.get(f"/api/v1/{path}/{other}").json())
        a = {k: links.get(v, v) if isinstance(v, str) else v for k, v in a.items()}
        b = {k: links.get(v, v) if isinstance(v, str) else v for k, v in b.items()}
        assert a == b, path
        assert event_of(publisher, mine) == event_of(publisher, other), path
    assert api.get(f"/api/v1/deals/{our_deal}").json()["currency"] == "EUR"
    history = api.get(f"/api/v1/deals/{our_deal}/stage-history").json()
    assert [h["to_stage_id"] for h in history] == [stages["Proposal"]]
    assert history[0]["changed_by"] == str(tenant.org.user_id)  # the signed-in user, as the API records


def test_a_field_error_is_the_apis_shown_next_to_the_field_with_the_values_kept(console, tenant, pipeline) -> None:
    token = sign_in(console, tenant.org.api_key)
    form = {
        "first_name": "Vera",
        "email": "vera-at-aurora",
        "job_title": "Head of Procurement",
        "lifecycle_stage": "lead",
    }
    page = console.post("/console/contacts/new", data={**form, "csrf_token": token})
    assert page.status_code == 422
    api = tenant.client.post("/api/v1/contacts", json={k: v for k, v in form.items()}).json()
    [detail] = api["error"]["details"]
    assert detail["field"] == "email"
    field = re.search(r'<div class="field invalid">.*?</div>', page.text, re.S)
    assert field and 'name="email"' in field.group(0) and 'aria-invalid="true"' in field.group(0)
    assert detail["message"] in field.group(0)
    assert 'value="vera-at-aurora"' in page.text and 'value="Head of Procurement"' in page.text
    assert tenant.client.get("/api/v1/contacts").json()["data"] == []  # nothing was written

    # An error about the whole input (no name, no email) is shown above the form.
    empty = console.post("/console/contacts/new", data={"lifecycle_stage": "lead", "csrf_token": token})
    assert empty.status_code == 422 and "at least one of first_name, last_name or email" in empty.text


def test_an_edit_of_a_record_someone_changed_meanwhile_is_a_conflict_that_shows_what_changed(
    console, tenant, pipeline
) -> None:
    crm = make_crm(tenant, pipeline)
    token = sign_in(console, tenant.org.api_key)
    company_id = crm["company"]["id"]
    form_page = console.get(f"/console/companies/{company_id}/edit")
    assert form_page.status_code == 200 and 'value="Aurora Optics"' in form_page.text
    opened = dict(re.findall(r'<input type="hidden" name="(version|was__\w+)" value="([^"]*)"', form_page.text))
    assert opened["version"] == "1"

    # Someone else renames it through the API while the form is open.
    tenant.client.patch(f"/api/v1/companies/{company_id}", json={"name": "Aurora Optical Systems"})
    mine = {**opened, "name": "Aurora Optics", "industry": "Astronomy", "csrf_token": token}
    conflict = console.post(f"/console/companies/{company_id}/edit", data=mine)
    assert conflict.status_code == 409
    assert "Someone else changed this company" in conflict.text
    row = re.search(r"<tr><th scope=\"row\">Name</th>.*?</tr>", conflict.text)
    assert row and "Aurora Optics" in row.group(0) and "Aurora Optical Systems" in row.group(0)
    assert 'value="Astronomy"' in conflict.text  # the user's own values are kept
    stored = tenant.client.get(f"/api/v1/companies/{company_id}").json()
    assert stored["name"] == "Aurora Optical Systems" and stored["industry"] == "Optics"  # no silent overwrite

    # Saving the re-shown form (now at the current version) is a deliberate overwrite.
    again = dict(re.findall(r'<input type="hidden" name="(version|was__\w+)" value="([^"]*)"', conflict.text))
    assert again["version"] == "2"
    saved = console.post(
        f"/console/companies/{company_id}/edit",
        data={**again, **{"name": "Aurora Optics", "industry": "Astronomy", "csrf_token": token}},
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("?notice=saved")
    stored = tenant.client.get(f"/api/v1/companies/{company_id}").json()
    assert (stored["name"], stored["industry"], stored["version"]) == ("Aurora Optics", "Astronomy", 3)


def test_delete_says_what_goes_with_the_record_then_deletes_it(console, tenant, pipeline, publisher) -> None:
    crm = make_crm(tenant, pipeline)
    token = sign_in(console, tenant.org.api_key)
    deal_id = crm["deal"]["id"]
    confirm = console.get(f"/console/deals/{deal_id}/delete")
    assert confirm.status_code == 200 and "Aurora telescopes" in confirm.text
    assert "Deleted with it: 1 activities." in confirm.text
    company = console.get(f"/console/companies/{crm['company']['id']}/delete")
    assert "no longer linked to it: 1 contacts, 1 deals" in company.text

    done = console.post(f"/console/deals/{deal_id}/delete", data={"csrf_token": token, "version": "1"})
    assert done.status_code == 303 and done.headers["location"] == "/console/deals?notice=deleted"
    assert tenant.client.get(f"/api/v1/deals/{deal_id}").status_code == 404
    assert [e.operation for e in publisher.events if str(e.entity_id) == deal_id][-1] == "deleted"
    assert "Deleted." in console.get("/console/deals?notice=deleted").text


def test_another_organizations_records_cannot_be_edited_or_deleted(console, tenant, make_tenant, pipeline) -> None:
    crm = make_crm(tenant, pipeline)
    other = make_tenant("Other")
    token = sign_in(console, other.org.api_key)
    company_id = crm["company"]["id"]
    assert console.get(f"/console/companies/{company_id}/edit").status_code == 404
    assert console.get(f"/console/companies/{company_id}/delete").status_code == 404
    edit = console.post(f"/console/companies/{company_id}/edit", data={"name": "Mine now", "csrf_token": token})
    assert edit.status_code == 404
    delete = console.post(f"/console/companies/{company_id}/delete", data={"csrf_token": token})
    assert delete.status_code == 404
    assert tenant.client.get(f"/api/v1/companies/{company_id}").json()["name"] == "Aurora Optics"
    # and the form refuses a company of theirs as a link
    bad = console.post(
        "/console/contacts/new",
        data={"first_name": "X", "lifecycle_stage": "lead", "company_id": company_id, "csrf_token": token},
    )
    assert bad.status_code == 422 and f"no company with id {company_id}" in bad.text


def test_forms_need_the_sessions_csrf_token(console, tenant, pipeline) -> None:
    sign_in(console, tenant.org.api_key)
    refused = console.post("/console/companies/new", data={"name": "Forged"})
    assert refused.status_code == 403
    assert tenant.client.get("/api/v1/companies").json()["data"] == []
    assert csrf_of(console.get("/console/companies/new").text)


def test_custom_properties_are_edited_as_name_value_lines(console, tenant, pipeline) -> None:
    token = sign_in(console, tenant.org.api_key)
    props = "tier = gold\nregion = south"
    created = console.post(
        "/console/companies/new", data={"name": "Cobalt", "custom_properties": props, "csrf_token": token}
    )
    company_id = created_id(created)
    assert tenant.client.get(f"/api/v1/companies/{company_id}").json()["custom_properties"] == {
        "tier": "gold",
        "region": "south",
    }
    tenant.client.patch(f"/api/v1/companies/{company_id}", json={"custom_properties": {"seats": 40}})
    form_page = console.get(f"/console/companies/{company_id}/edit").text
    opened = dict(re.findall(r'<input type="hidden" name="(version|was__\w+)" value="([^"]*)"', form_page))
    assert "region = south\nseats = 40\ntier = gold" in form_page
    # Change one, remove one, leave the number alone.
    edited = {**opened, "name": "Cobalt", "custom_properties": "seats = 40\ntier = platinum", "csrf_token": token}
    saved = console.post(f"/console/companies/{company_id}/edit", data=edited)
    assert saved.status_code == 303, saved.text
    stored = tenant.client.get(f"/api/v1/companies/{company_id}").json()["custom_properties"]
    assert stored == {"tier": "platinum", "seats": 40}  # the number is still a number

    bad = console.post(
        "/console/companies/new", data={"name": "Beryl", "custom_properties": "just words", "csrf_token": token}
    )
    assert bad.status_code == 422
    field = re.search(r'<div class="field invalid">.*?</div>', bad.text, re.S)
    assert (
        field and 'name="custom_properties"' in field.group(0) and "line 1: write it as name = value" in field.group(0)
    )
