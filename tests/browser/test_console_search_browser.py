"""Related-record selects in an organization with more companies than one select lists, in real
headless Chromium: the server search as you type (htmx), choosing a company far past the first
500 by name, creating the contact; axe-core clean; laptop and phone width. And the bulk actions
on every record matching a filter, with their progress. Screenshots: .okyaku/screenshots/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from okyaku.console.forms import MAX_OPTIONS
from okyaku.crm.imports import ImportOptions, run_import
from okyaku.db import Database
from okyaku.llm import LLMConfig, LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.tenancy import NewOrganization, create_organization
from tests.browser.conftest import (
    LAPTOP,
    PHONE,
    api_client,
    axe_violations,
    check_accessible,
    console_runtime,
    console_server,
    fits_the_viewport,
    laptop_tab,
    shot,
    sign_in_with,
)
from tests.support.fixtures import llm_settings_for
from tests.support.hashing_embedder import HashingEmbedder
from tests.support.openai_server import ScriptedOpenAIServer

MANY = MAX_OPTIONS + 40


@dataclass
class BigWorld:
    url: str
    org: NewOrganization
    api: TestClient


@pytest.fixture(scope="module")
def big_world(pg: LocalDatabase, db: Database) -> Iterator[BigWorld]:
    """One organization with MANY companies (imported), served on a loopback port."""
    runtime = console_runtime(pg, db)
    org = create_organization(db, f"Big {uuid.uuid4().hex[:6]}", "rep@big.example")
    names = "".join(f"Account {i:04d}\n" for i in range(MANY - 1)) + "Zenith Optics\n"
    run_import(db, org.organization_id, ("name\n" + names).encode(), ImportOptions(entity_type="company"))
    with ScriptedOpenAIServer() as openai:
        llm = LLMGateway(LLMConfig.from_settings(llm_settings_for(openai.base_url)))
        console = console_server(runtime, llm, "browser-test-secret", embedder=HashingEmbedder())
        with api_client(runtime, org.api_key) as api, console as (url, _):
            yield BigWorld(url, org, api)
        llm.close()


@pytest.fixture
def tab(browser: Any, big_world: BigWorld) -> Iterator[Any]:
    with laptop_tab(browser, big_world.url) as page:
        sign_in_with(page, big_world.org.api_key)
        yield page


def test_search_a_company_among_hundreds_as_you_type_and_create_the_contact(
    tab, big_world, screenshots, axe_source
) -> None:
    page = tab
    page.goto("/console/contacts/new")
    check_accessible(page)
    assert axe_violations(page, axe_source) == []
    search = page.get_by_label(f"Search {MANY} companies")
    assert page.locator("button[name=search_ref]").count() == 0  # with JavaScript, no Search button
    search.press_sequentially("zenith", delay=20)
    company = page.get_by_label("Company", exact=True)
    page.wait_for_function(
        "() => [...document.querySelector('#f-company_id').options].some(o => o.textContent === 'Zenith Optics')"
    )
    assert company.evaluate("s => [...s.options].map(o => o.textContent)") == ["— none —", "Zenith Optics"]
    with page.expect_response(lambda r: "/console/refs/company" in r.url):
        search.press("Enter")  # searches again; does not submit the form
    page.wait_for_load_state()
    assert page.url.endswith("/console/contacts/new")
    company.locator("option", has_text="Zenith Optics").wait_for(state="attached")
    company.select_option(label="Zenith Optics")
    page.get_by_label("First name").fill("Vera")
    page.get_by_label("Email").fill("vera@zenith.example")
    shot(page, screenshots, "40-company-search")
    page.set_viewport_size(PHONE)
    assert fits_the_viewport(page), "the company search scrolls sideways on a phone"
    shot(page, screenshots, "40-company-search-phone")
    page.set_viewport_size(LAPTOP)
    assert axe_violations(page, axe_source) == []
    page.get_by_label("Email").press("Enter")  # Enter in a field saves
    page.get_by_role("heading", name="Vera", level=1).wait_for()
    assert page.get_by_role("link", name="Zenith Optics").is_visible()
    [contact] = [c for c in big_world.api.get("/api/v1/contacts").json()["data"] if c["email"] == "vera@zenith.example"]
    zenith = big_world.api.get("/api/v1/companies", params={"q": "Zenith"}).json()["data"][0]
    assert contact["company_id"] == zenith["id"]


def test_form_dates_are_on_the_browsers_clock(browser, big_world) -> None:
    """forms.js tells the server the browser's zone: a due date typed as 09:00 in Tokyo is 00:00 UTC."""
    context = browser.new_context(viewport=LAPTOP, base_url=big_world.url, timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        page.goto("/console/login")
        page.get_by_label("API key").fill(big_world.org.api_key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/console/today")
        page.goto("/console/tasks/new")
        assert page.locator("label[for=f-due_date]").inner_text() == "Due (Asia/Tokyo)"
        page.get_by_label("Title").fill("Tokyo call")
        page.get_by_label("Due").fill("2026-02-02T09:00")
        page.get_by_role("button", name="Create task").click()
        page.wait_for_url("**/console/tasks?notice=created")
        [task] = [t for t in big_world.api.get("/api/v1/tasks").json()["data"] if t["title"] == "Tokyo call"]
        assert task["due_date"].startswith("2026-02-02T00:00:00")
        assert "2026-02-02 09:00" in page.locator("li.task", has_text="Tokyo call").inner_text()
    finally:
        context.close()


def test_assign_an_owner_to_every_matching_company_with_progress(tab, big_world, screenshots, axe_source) -> None:
    page = tab
    page.goto("/console/companies")
    bulk = page.get_by_role("group", name="With the selected companies")
    bulk.get_by_label(f"All {MANY} companies matching the list").check()
    bulk.get_by_label("New owner").select_option(value=str(big_world.org.user_id))
    name = bulk.get_by_label("New owner").locator("option:checked").inner_text()
    bulk.get_by_role("button", name="Assign owner").click()
    page.get_by_role("heading", name="In progress", level=2).wait_for()  # the first step's page
    shot(page, screenshots, "41-bulk-progress")  # (axe runs on the last step's page: this one changes under it)
    # htmx asks for the next steps by itself until all are done.
    page.get_by_role("heading", name="Done", level=2).wait_for(timeout=60_000)
    assert f"{MANY} of {MANY} companies handled" in page.locator("#bulk-progress").inner_text()
    assert page.get_by_role("status").inner_text() == f"{MANY} assigned to {name}; 0 refused."
    check_accessible(page)
    assert axe_violations(page, axe_source) == []
    page.set_viewport_size(PHONE)
    assert fits_the_viewport(page), "the bulk progress page scrolls sideways on a phone"
    shot(page, screenshots, "41-bulk-progress-phone")
    page.get_by_role("link", name="Back to the companies").click()
    page.wait_for_url("**/console/companies?notice=assigned_n*")
    assert page.get_by_role("status").inner_text() == f"Owner assigned to {MANY} records; 0 refused."
    owners, cursor = [], None
    while True:
        listed = big_world.api.get("/api/v1/companies", params={"limit": 200} | ({"cursor": cursor} if cursor else {}))
        owners += [c["owner_id"] for c in listed.json()["data"]]
        cursor = listed.json()["next_cursor"]
        if not cursor:
            break
    assert owners == [str(big_world.org.user_id)] * MANY


def test_import_contacts_creating_their_companies(tab, big_world, screenshots, axe_source, tmp_path) -> None:
    page = tab
    csv = tmp_path / "people.csv"
    csv.write_text("first_name,email,company\nIda,ida@example.com,Kestrel Labs\nJon,jon@example.com,kestrel  labs\n")
    page.goto("/console/import")
    page.get_by_label("Records in the file").select_option("contact")
    page.get_by_label("CSV file").set_input_files(str(csv))
    page.get_by_label("Create the companies the file names that do not exist yet").check()
    page.get_by_role("button", name="Check the file (dry run)").click()
    status = page.get_by_role("status")
    status.filter(has_text="Would create 1 company.").wait_for()
    assert "Nothing was written yet." in status.inner_text()
    assert axe_violations(page, axe_source) == []
    shot(page, screenshots, "42-import-dry-run-new-companies")
    assert page.get_by_label("Create the companies the file names that do not exist yet").is_checked()
    page.get_by_role("button", name="Import 2 rows").click()
    page.get_by_role("status").filter(has_text="Created 1 company.").wait_for()
    assert axe_violations(page, axe_source) == []
    kestrel = big_world.api.get("/api/v1/companies", params={"q": "Kestrel"}).json()["data"]
    assert [c["name"] for c in kestrel] == ["Kestrel Labs"]
