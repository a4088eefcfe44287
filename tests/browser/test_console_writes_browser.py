"""Writing to the CRM from the console in real headless Chromium: create a company, a contact at
it and a deal for it; an edit with a validation error, then fixed; the version conflict; moving a
deal on the board by drag and by the no-JS stage select; Won with a reason. Screenshots of each
page at laptop and phone width: .okyaku/screenshots/."""

from __future__ import annotations

import uuid

from okyaku.crm.schemas import CompanyUpdate
from tests.browser import test_console_browser as base
from tests.browser.conftest import LAPTOP, PHONE, both_widths, check_accessible
from tests.browser.test_console_browser import sign_in

# The browser suite's world (two organizations seeded through the API) and its page fixture.
world = base.world
page = base.page


def test_create_a_company_a_contact_at_it_and_a_deal_for_it(page, world, screenshots) -> None:
    sign_in(page, world)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Companies").click()
    page.get_by_role("link", name="New company").click()
    page.wait_for_url("**/console/companies/new")
    check_accessible(page)
    both_widths(page, screenshots, "20-new-company")
    page.get_by_label("Name").fill("Borealis Instruments")
    page.get_by_label("Industry").fill("Scientific instruments")
    page.get_by_label("Employees").fill("85")
    page.get_by_role("button", name="Create company").click()
    page.get_by_role("heading", name="Borealis Instruments", level=1).wait_for()
    assert page.get_by_role("status").inner_text() == "Created."
    company_url = page.url

    page.goto("/console/contacts/new")
    page.get_by_label("First name").fill("Ada")
    page.get_by_label("Last name").fill("Byron")
    page.get_by_label("Email").fill("ada@borealis.example")
    page.get_by_label("Filter Company").fill("borea")  # the filter box narrows the choice by name
    visible = page.get_by_label("Company", exact=True).evaluate(
        "s => [...s.options].filter(o => !o.hidden && o.value).map(o => o.textContent)"
    )
    assert visible == ["Borealis Instruments"]
    page.get_by_label("Company", exact=True).select_option(label="Borealis Instruments")  # chosen by name
    page.get_by_role("button", name="Create contact").click()
    page.get_by_role("heading", name="Ada Byron", level=1).wait_for()
    assert page.get_by_role("link", name="Borealis Instruments").is_visible()

    page.goto("/console/deals/new")
    page.get_by_label("Name").fill("Borealis spectrometers")
    page.get_by_label("Stage").select_option(label="Proposal")
    page.get_by_label("Amount").fill("64000")
    page.get_by_label("Company", exact=True).select_option(label="Borealis Instruments")
    page.get_by_label("Contact", exact=True).select_option(label="Ada Byron <ada@borealis.example>")
    page.get_by_role("button", name="Create deal").click()
    page.get_by_role("heading", name="Borealis spectrometers", level=1).wait_for()
    details = page.get_by_role("region", name="Details")
    assert details.locator("dl.fields dd").first.inner_text() == "Proposal"  # the stage
    assert "64,000" in details.inner_text() and "Ada Byron" in details.inner_text()

    page.goto(company_url)
    assert page.get_by_role("region", name="People").get_by_role("link", name="Ada Byron").is_visible()
    assert page.get_by_role("region", name="Deals").get_by_role("link", name="Borealis spectrometers").is_visible()
    check_accessible(page)
    both_widths(page, screenshots, "21-company-with-its-contact-and-deal")


def test_edit_with_a_validation_error_then_fix_it(page, world, screenshots) -> None:
    sign_in(page, world)
    page.goto(f"/console/contacts/{world.ids['tom']}")
    page.get_by_role("link", name="Edit", exact=True).click()
    page.wait_for_url("**/edit")
    page.get_by_label("Email").fill("tom-at-northwind")
    page.get_by_label("Job title").fill("Fleet manager")
    page.get_by_role("button", name="Save").click()
    email = page.get_by_label("Email")
    error = page.locator("#f-email-error")
    error.wait_for()
    assert "not a valid email address" in error.inner_text()
    assert email.get_attribute("aria-invalid") == "true"
    assert email.input_value() == "tom-at-northwind" and page.get_by_label("Job title").input_value() == "Fleet manager"
    assert page.get_by_role("alert").is_visible()
    check_accessible(page)
    both_widths(page, screenshots, "22-edit-contact-validation-error")

    email.fill("tom@northwind.example")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="Tom Baker", level=1).wait_for()
    assert page.get_by_role("status").inner_text() == "Saved."
    details = page.get_by_role("region", name="Details").inner_text()
    assert "tom@northwind.example" in details and "Fleet manager" in details


def test_an_edit_after_someone_else_changed_the_record_shows_the_conflict(page, world, screenshots) -> None:
    sign_in(page, world)
    page.goto(f"/console/companies/{world.ids['aurora']}/edit")
    page.get_by_label("City").fill("Santiago")
    # Meanwhile a colleague changes the industry through the same service.
    with world.runtime.transaction(world.ours.organization_id) as session:
        from okyaku.crm.entities import ENTITIES

        ENTITIES["company"].service.update(session, uuid_of(world.ids["aurora"]), CompanyUpdate(industry="Photonics"))
    page.get_by_role("button", name="Save").click()
    conflict = page.get_by_role("table", name="Changed by someone else since you opened this form")
    conflict.wait_for()
    row = conflict.get_by_role("row", name="Industry")
    assert "Optics" in row.inner_text() and "Photonics" in row.inner_text()
    assert page.get_by_label("City").input_value() == "Santiago"  # my value is kept
    assert "Someone else changed this company" in page.get_by_role("alert").inner_text()
    both_widths(page, screenshots, "23-edit-conflict")
    page.get_by_label("Industry").fill("Photonics")  # keep theirs, add mine
    page.get_by_role("button", name="Save").click()
    page.get_by_role("heading", name="Aurora Optics", level=1).wait_for()
    details = page.get_by_role("region", name="Details").inner_text()
    assert "Photonics" in details and "Santiago" in details


def test_move_deals_on_the_board_by_drag_and_without_javascript_then_win_one(page, world, screenshots) -> None:
    sign_in(page, world)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Pipeline").click()
    page.wait_for_url("**/console/pipeline")
    qualification = page.locator(f'.board-column[data-stage-id="{world.ids["stage:Qualification"]}"]')
    negotiation = page.locator(f'.board-column[data-stage-id="{world.ids["stage:Negotiation"]}"]')
    assert "Aurora telescopes" in qualification.inner_text()
    check_accessible(page)
    both_widths(page, screenshots, "24-pipeline-board")

    # Drag: the card's own form is submitted with the column's stage.
    page.locator(f"#deal-{world.ids['telescopes']}").drag_to(negotiation)
    page.get_by_role("status").filter(has_text="Stage changed.").wait_for()
    negotiation = page.locator(f'.board-column[data-stage-id="{world.ids["stage:Negotiation"]}"]')
    assert "Aurora telescopes" in negotiation.inner_text()
    assert "1 deal · 48,000" in negotiation.inner_text()

    # No JavaScript needed: the stage select and Move, by keyboard.
    card = page.locator(f"#deal-{world.ids['fleet']}")
    card.get_by_label("Stage of Northwind fleet tracking").select_option(label="Negotiation")
    card.get_by_role("button", name="Move Northwind fleet tracking").press("Enter")
    negotiation = page.locator(f'.board-column[data-stage-id="{world.ids["stage:Negotiation"]}"]')
    negotiation.locator(f"#deal-{world.ids['fleet']}").wait_for()
    assert "2 deals · 168,000" in negotiation.inner_text()

    # Won with a reason, from the deal page.
    page.goto(f"/console/deals/{world.ids['fleet']}")
    page.get_by_text("Close as won or lost").click()
    page.get_by_label("Won", exact=True).check()
    page.get_by_label("Reason").fill("Real-time tracking won the trial")
    page.get_by_role("button", name="Close deal").click()
    page.get_by_role("status").filter(has_text="Deal closed.").wait_for()
    details = page.get_by_role("region", name="Details").inner_text()
    assert "Won reason\nReal-time tracking won the trial" in details  # the deal's own field (migration 0023)
    assert page.get_by_role("region", name="Details").locator("dl.fields dd").first.inner_text() == "Closed Won"
    history = page.get_by_role("region", name="Stage history").inner_text()
    assert "Proposal → Negotiation" in history and "Negotiation → Closed Won" in history
    page.goto("/console/pipeline")
    assert "Northwind fleet tracking" not in page.locator(".board").inner_text()


def uuid_of(text: str) -> uuid.UUID:
    return uuid.UUID(text)


def test_log_a_call_from_a_contact_page_and_see_it_on_the_timeline(page, world, screenshots) -> None:
    sign_in(page, world)
    page.goto(f"/console/contacts/{world.ids['vera']}")
    activities = page.get_by_role("region", name="Activities")
    log = activities.locator("details.log-activity")
    if log.get_attribute("open") is None:  # open already on a record with no activity yet
        log.locator("summary").click()
    activities.get_by_label("Type").select_option("call")
    activities.get_by_label("Subject").fill("Follow-up on the telescope quote")
    activities.get_by_label("Notes").fill("Wants delivery before the winter season.")
    activities.get_by_role("button", name="Log activity").click()
    page.get_by_role("status").filter(has_text="Activity logged.").wait_for()
    first = page.get_by_role("region", name="Activities").locator("ol.timeline li").first
    assert "Follow-up on the telescope quote" in first.inner_text() and "call" in first.inner_text()
    assert "Wants delivery before the winter season." in first.inner_text()
    check_accessible(page)
    both_widths(page, screenshots, "25-contact-call-logged")


def test_today_then_create_a_task_from_a_record_and_complete_it(page, world, screenshots) -> None:
    sign_in(page, world)  # lands on Today
    today = page.get_by_role("main")
    assert today.get_by_role("region", name="My tasks due").is_visible()
    assert today.get_by_role("region", name="Daily priorities").is_visible()
    assert today.get_by_role("region", name="My deals closing this month").is_visible()
    assert "Zephyr" not in page.content()
    check_accessible(page)
    both_widths(page, screenshots, "26-today")

    page.goto(f"/console/deals/{world.ids['telescopes']}")
    page.get_by_role("region", name="Activities").get_by_role("link", name="New task").click()
    page.wait_for_url("**/console/tasks/new**")
    assert (
        page.get_by_label("Deal", exact=True).locator("option:checked").inner_text() == "Aurora telescopes"
    )  # pre-filled
    page.get_by_label("Title").fill("Send the signed quote")
    page.get_by_label("Due").fill("2020-01-02T09:00")  # long overdue
    page.get_by_role("button", name="Create task").click()
    page.get_by_role("heading", name="Aurora telescopes", level=1).wait_for()  # back to the deal

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Tasks").click()
    page.wait_for_url("**/console/tasks")
    task = page.locator("li.task", has_text="Send the signed quote")
    assert "overdue" in (task.get_attribute("class") or "") and "Aurora telescopes" in task.inner_text()
    check_accessible(page)
    both_widths(page, screenshots, "27-tasks")
    task.get_by_role("button", name="Complete Send the signed quote").click()
    page.get_by_role("status").filter(has_text="Task completed.").wait_for()
    assert page.locator("li.task", has_text="Send the signed quote").count() == 0
    page.get_by_role("link", name="Done").click()
    page.locator("li.task.done", has_text="Send the signed quote").wait_for()


def test_another_organizations_ids_give_404_pages_on_forms(page, world) -> None:
    sign_in(page, world)
    theirs = world.their_ids
    for path in (
        f"/console/companies/{theirs['aurora']}/edit",
        f"/console/contacts/{theirs['vera']}/delete",
        f"/console/deals/{theirs['fleet']}/edit",
    ):
        response = page.goto(path)
        assert response.status == 404, path
        assert page.get_by_role("heading", name="Not found", level=1).is_visible()
        assert "Zephyr" not in page.content()


def test_every_console_page_passes_axe_core_with_no_serious_or_critical_violation(page, world, axe_source) -> None:
    """axe-core (WCAG 2.1 A/AA rules) on each page of the console at laptop width, and the daily
    pages at phone width too."""
    from tests.browser.conftest import axe_violations

    sign_in(page, world)
    ids = world.ids
    pages = [
        "/console/today",
        "/console",
        "/console/pipeline",
        "/console/tasks",
        "/console/tasks?who=everyone&state=done",
        "/console/contacts",
        "/console/companies?sort=name",
        "/console/deals",
        f"/console/contacts/{ids['vera']}",
        f"/console/companies/{ids['northwind']}",
        f"/console/deals/{ids['lenses']}",
        "/console/contacts/new",
        f"/console/deals/{ids['lenses']}/edit",
        "/console/tasks/new",
        "/console/activities/new",
        f"/console/companies/{ids['northwind']}/delete",
        "/console/search?q=fleet",
        "/console/import",
        "/console/approvals",
        "/console/runs",
    ]
    failures = {}
    phone = {"/console/today", "/console/pipeline", "/console/tasks", "/console/contacts/new"}
    for path in pages:
        for size in (LAPTOP, PHONE) if path in phone else (LAPTOP,):
            page.set_viewport_size(size)
            response = page.goto(path)
            assert response.ok, path
            found = axe_violations(page, axe_source)
            if found:
                failures[f"{path} @{size['width']}"] = found
    page.set_viewport_size(LAPTOP)
    assert failures == {}


def test_bulk_assign_an_owner_to_selected_deals(page, world, screenshots, db) -> None:
    from okyaku.tenancy import create_user

    rep = create_user(db, world.ours.organization_id, f"rep-{uuid.uuid4().hex[:6]}@ours.example", "Rita Rep")
    sign_in(page, world)
    page.goto("/console/deals?sort=name")
    check_accessible(page)
    page.get_by_label("Select Aurora lens renewal").check()
    page.get_by_label("Select Northwind fleet tracking").check()
    page.get_by_label("New owner").select_option(label="Rita Rep")
    both_widths(page, screenshots, "28-deals-bulk-select")
    page.get_by_role("button", name="Assign owner").click()
    page.get_by_role("status").filter(has_text="Owner assigned to 2 records; 0 refused.").wait_for()
    page.goto(f"/console/deals?owner={rep.id}")
    assert sorted(page.locator("table.records tbody th a").all_inner_texts()) == [
        "Aurora lens renewal",
        "Northwind fleet tracking",
    ]
