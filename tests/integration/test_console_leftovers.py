"""Console details over HTTP (no browser): related-record selects in organizations with more
records than one select lists (a server search, with and without JavaScript); Today's empty
priorities. The live search in a real browser is in tests/browser/test_console_search_browser.py."""

from __future__ import annotations

import re

import pytest

from okyaku.console.forms import MAX_OPTIONS, SEARCH_RESULTS
from tests.integration.test_console import sign_in
from tests.integration.test_imports import do_import

MANY = MAX_OPTIONS + 20


def options_of(html: str, select_id: str) -> list[tuple[str, str]]:
    match = re.search(rf'<select id="{select_id}"[^>]*>(.*?)</select>', html, re.S)
    assert match, f"no select {select_id}"
    return re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', match.group(1))


@pytest.fixture
def big_tenant(db, tenant):  # type: ignore[no-untyped-def]
    """An organization with more companies than a select lists; the last ones sort last by name."""
    rows = "".join(f"Company {i:04d}\n" for i in range(MANY - 2))
    rows += "Zenith 100% Optics\nZenith Optics_Labs\n"  # names with LIKE wildcards in them
    report = do_import(db, tenant, "name\n" + rows, entity="company")
    assert report.created == MANY
    return tenant


def test_a_big_organization_gets_a_searchable_company_select(console, big_tenant) -> None:
    tenant = big_tenant
    sign_in(console, tenant.org.api_key)
    form = console.get("/console/contacts/new").text
    assert f'<label for="f-company_id-q" class="small">Search {MANY} companies</label>' in form
    assert 'name="search_ref" value="company_id"' in form  # the no-JavaScript path
    listed = options_of(form, "f-company_id")
    assert len(listed) == SEARCH_RESULTS + 1 and listed[1][1] == "Company 0000"  # "— none —" first

    # The endpoint htmx calls as you type: every word must match, % and _ are plain characters.
    found = console.get("/console/refs/company", params={"field": "company_id", "q_company_id": "zenith 100%"})
    assert found.status_code == 200
    assert [label for _, label in options_of(f'<select id="x">{found.text}</select>', "x")] == [
        "— none —",
        "Zenith 100% Optics",
    ]
    underscore = console.get("/console/refs/company", params={"field": "company_id", "q": "optics_"})
    assert "Zenith Optics_Labs" in underscore.text and "Zenith 100% Optics" not in underscore.text
    nothing = console.get("/console/refs/company", params={"field": "company_id", "q": "unobtainium"})
    assert "nothing matches “unobtainium”" in nothing.text
    assert console.get("/console/refs/unicorn", params={"field": "x"}).status_code == 404
    assert console.get("/console/refs/company", params={"field": "DROP TABLE"}).status_code == 422


def test_without_javascript_search_then_choose_then_create(console, big_tenant) -> None:
    tenant = big_tenant
    token = sign_in(console, tenant.org.api_key)
    base = {"csrf_token": token, "first_name": "Vera", "email": "vera@zenith.example", "lifecycle_stage": "lead"}
    searched = console.post(
        "/console/contacts/new", data={**base, "q_company_id": "Zenith optics", "search_ref": "company_id"}
    )
    assert searched.status_code == 200  # the form again, not saved
    assert tenant.client.get("/api/v1/contacts").json()["data"] == []
    assert 'value="Vera"' in searched.text and 'value="Zenith optics"' in searched.text  # values kept
    listed = options_of(searched.text, "f-company_id")
    assert [label for _, label in listed] == ["— none —", "Zenith 100% Optics", "Zenith Optics_Labs"]
    zenith = listed[1][0]

    # Enter in another field presses the first button (a Search one): with nothing to search, it saves.
    created = console.post(
        "/console/contacts/new", data={**base, "company_id": zenith, "q_company_id": "", "search_ref": "company_id"}
    )
    assert created.status_code == 303, created.text
    [contact] = tenant.client.get("/api/v1/contacts").json()["data"]
    assert contact["company_id"] == zenith  # a company far past the first 500 by name

    # Its edit form lists the current choice though it is not among the first matches.
    edit = console.get(f"/console/contacts/{contact['id']}/edit").text
    assert ("selected", "Zenith 100% Optics") in [
        ("selected" if f'value="{zenith}" selected' in edit else "", label)
        for _, label in options_of(edit, "f-company_id")
    ]


def test_a_small_organization_keeps_the_plain_select(console, tenant) -> None:
    sign_in(console, tenant.org.api_key)
    tenant.client.post("/api/v1/companies", json={"name": "Aurora Optics"})
    form = console.get("/console/deals/new").text
    assert "f-company_id-q" not in form and 'name="search_ref"' not in form
    assert [label for _, label in options_of(form, "f-company_id")] == ["— none —", "Aurora Optics"]


def test_today_with_no_priorities_says_so_without_a_numbered_list(console, tenant) -> None:
    sign_in(console, tenant.org.api_key)
    today = console.get("/console/today").text
    section = re.search(r'<h2 id="priorities-title">.*?</section>', today, re.S)
    assert section, "no priorities section"
    assert "<ol" not in section.group(0) and "<li" not in section.group(0)
    assert (
        '<p class="muted">No recommendations right now: nothing in the facts calls for an action.</p>'
        in section.group(0)
    )


def test_form_dates_are_read_and_shown_on_the_users_wall_clock(console, tenant, pipeline) -> None:
    token = sign_in(console, tenant.org.api_key)
    console.cookies.set("okyaku_tz", "America%2FNew_York", path="/console")  # as forms.js sets it
    form = console.get("/console/tasks/new").text
    assert '<input type="hidden" name="tz" value="America/New_York">' in form
    assert '<label for="f-due_date">Due <span class="zone">(America/New_York)</span>' in form
    created = console.post(
        "/console/tasks/new",
        data={"csrf_token": token, "title": "Call Vera", "due_date": "2026-03-10T09:00", "tz": "America/New_York"},
    )
    assert created.status_code == 303, created.text
    [task] = tenant.client.get("/api/v1/tasks").json()["data"]
    assert task["due_date"].startswith("2026-03-10T13:00:00")  # 9:00 in New York (EDT) is 13:00 UTC
    edit = console.get(f"/console/tasks/{task['id']}/edit").text
    assert 'name="due_date" type="datetime-local" value="2026-03-10T09:00"' in edit

    # A form keeps the zone it was rendered in, whatever the cookie says meanwhile.
    console.cookies.set("okyaku_tz", "Asia%2FTokyo", path="/console")
    form_data = {"csrf_token": token, "title": "Call Vera", "due_date": "2026-03-10T10:00", "tz": "America/New_York"}
    form_data |= {"version": str(task["version"]), "was__title": "Call Vera", "was__due_date": "2026-03-10T09:00"}
    form_data |= {"priority": "normal", "status": "open", "was__priority": "normal", "was__status": "open"}
    saved = console.post(f"/console/tasks/{task['id']}/edit", data=form_data)
    assert saved.status_code == 303, saved.text
    assert tenant.client.get(f"/api/v1/tasks/{task['id']}").json()["due_date"].startswith("2026-03-10T14:00:00")

    # The Log activity form of a record page, and its timeline, are on the same clock (Tokyo now).
    company = tenant.client.post("/api/v1/companies", json={"name": "Aurora Optics"}).json()
    logged = console.post(
        "/console/activities/new",
        data={"csrf_token": token, "type": "call", "occurred_at": "2026-01-05T09:30", "tz": "Asia/Tokyo"}
        | {"company_id": company["id"], "next": f"/console/companies/{company['id']}"},
    )
    assert logged.status_code == 303, logged.text
    [call] = tenant.client.get("/api/v1/activities").json()["data"]
    assert call["occurred_at"].startswith("2026-01-05T00:30:00")
    page = console.get(f"/console/companies/{company['id']}").text
    assert '<label for="log-when">When (Asia/Tokyo)</label>' in page and "2026-01-05 09:30" in page

    # A zone that is not one is ignored: the organization's clock (UTC here) is used.
    console.cookies.set("okyaku_tz", "Mars%2FOlympus", path="/console")
    assert '<input type="hidden" name="tz" value="UTC">' in console.get("/console/tasks/new").text


def hidden_fields(html: str) -> dict[str, str]:
    form = re.search(r'<form method="post" action="/console/contacts/bulk".*?</form>', html, re.S)
    assert form, "no bulk form on the page"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(0)))


def test_bulk_assign_and_delete_every_record_matching_a_filter_in_steps(console, db, tenant, publisher) -> None:
    from okyaku.console.bulk import CHUNK
    from okyaku.tenancy import create_user

    leads = CHUNK * 2 + 30  # three steps
    rows = "".join(f"c-{i:04d},Lead{i:04d},lead\n" for i in range(leads))
    rows += "".join(f"k-{i:04d},Customer{i:04d},customer\n" for i in range(12))
    assert do_import(db, tenant, "external_id,first_name,lifecycle_stage\n" + rows).created == leads + 12
    rep = create_user(db, tenant.id, "rep@acme.example", "Rita Rep")
    token = sign_in(console, tenant.org.api_key)

    listed = console.get("/console/contacts", params={"lifecycle_stage": "lead"}).text
    assert f"All {leads} contacts matching this search and these filters, on every page" in listed
    assert '<input type="hidden" name="filter_lifecycle_stage" value="lead">' in listed
    publisher.events.clear()

    form = {"csrf_token": token, "scope": "all", "action": "assign", "owner": str(rep.id)}
    form |= {"filter_lifecycle_stage": "lead"}
    steps = []
    while True:
        answer = console.post("/console/contacts/bulk", data=form)
        assert answer.status_code == 200, answer.text
        handled = re.search(r"(\d+) of (\d+) contacts handled", answer.text)
        assert handled, answer.text
        steps.append((int(handled.group(1)), int(handled.group(2))))
        if "Back to the contacts" in answer.text:
            break
        assert 'hx-trigger="load"' in answer.text and "<noscript><button" in answer.text
        form = hidden_fields(answer.text)
        assert len(steps) < 10
    assert steps == [(CHUNK, leads), (2 * CHUNK, leads), (leads, leads)]
    assert f"{leads} assigned to Rita Rep; 0 refused." in answer.text
    for stage, expected in (("lead", [str(rep.id)] * leads), ("customer", [None] * 12)):
        owners: list[str | None] = []
        cursor = None
        while True:
            params = {"lifecycle_stage": stage, "limit": 200} | ({"cursor": cursor} if cursor else {})
            page = tenant.client.get("/api/v1/contacts", params=params).json()
            owners += [c["owner_id"] for c in page["data"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert owners == expected, stage  # every lead assigned, no customer touched
    # One change event per record, each an update of the owner.
    assert len(publisher.events) == leads
    assert {(e.operation, tuple(e.changed_fields)) for e in publisher.events} == {("updated", ("owner_id",))}

    # Delete every customer: confirmed first, with the count and names.
    start = {"csrf_token": token, "scope": "all", "action": "delete", "filter_lifecycle_stage": "customer"}
    confirm = console.post("/console/contacts/bulk", data=start)
    assert "Delete all 12 contacts that match" in confirm.text and "Customer0011" in confirm.text
    assert tenant.client.get("/api/v1/contacts", params={"lifecycle_stage": "customer"}).json()["data"]
    done = console.post("/console/contacts/bulk", data={**start, "confirm": "yes", "total": "12"})
    assert "12 deleted; 0 refused." in done.text and "Back to the contacts" in done.text
    assert tenant.client.get("/api/v1/contacts", params={"lifecycle_stage": "customer"}).json()["data"] == []
    bad = console.post("/console/contacts/bulk", data={**start, "action": "explode"})
    assert bad.status_code == 422
