"""E-mail from the console in real headless Chromium, through a real SMTP server (aiosmtpd): compose
and send from a contact, see it sent in the Outbox and on the contact's timeline, reply to it from
the timeline (threaded), axe-clean at laptop and phone width. Screenshots: .okyaku/screenshots/."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from okyaku.db import Database
from okyaku.llm import LLMConfig, LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.tenancy import NewOrganization, create_organization
from tests.browser.conftest import (
    accessible_at_both_widths,
    api_client,
    console_runtime,
    console_server,
    laptop_tab,
    sign_in_with,
)
from tests.support.drafts import propose_draft_email
from tests.support.fixtures import llm_settings_for
from tests.support.hashing_embedder import HashingEmbedder
from tests.support.smtp_server import TestSmtpServer


@dataclass
class MailWorld:
    url: str
    org: NewOrganization
    contact_id: str
    address: str
    sender: str
    smtp: TestSmtpServer
    services: Any


@pytest.fixture(scope="module")
def mail_world(pg: LocalDatabase, db: Database) -> Iterator[MailWorld]:
    smtp = TestSmtpServer().start()
    # The console sends as `okyaku dev` does: SMTP from the settings, a worker thread per e-mail.
    runtime = console_runtime(pg, db, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False)
    sender = f"rep-{uuid.uuid4().hex[:6]}@ours.example"
    org = create_organization(db, f"Mail {uuid.uuid4().hex[:6]}", sender)
    address = f"grace-{uuid.uuid4().hex[:6]}@customer.example"
    with api_client(runtime, org.api_key) as client:
        contact = client.post(
            "/api/v1/contacts", json={"first_name": "Grace", "last_name": "Hopper", "email": address}
        ).json()
    llm = LLMGateway(LLMConfig.from_settings(llm_settings_for("http://127.0.0.1:9/v1")))  # never called here
    try:
        with console_server(runtime, llm, "mail-test-secret", embedder=HashingEmbedder()) as (url, services):
            yield MailWorld(url, org, contact["id"], address, sender, smtp, services)
    finally:
        llm.close()
        smtp.stop()


@pytest.fixture
def page(browser: Any, mail_world: MailWorld) -> Iterator[Any]:
    with laptop_tab(browser, mail_world.url) as tab:
        yield tab


def wait_until_sent(page: Any) -> None:
    """The worker thread sends after the redirect: reload the message page until it says so."""
    deadline = time.monotonic() + 15
    while "Sent" not in page.locator("#delivery").inner_text():
        assert time.monotonic() < deadline, page.locator("#delivery").inner_text()
        time.sleep(0.2)
        page.reload()


def test_compose_and_send_from_a_contact_see_it_in_the_outbox_and_the_timeline_then_reply(
    page: Any, mail_world: MailWorld, axe_source: str, screenshots: Any
) -> None:
    sign_in_with(page, mail_world.org.api_key)
    page.goto(f"/console/contacts/{mail_world.contact_id}")
    page.get_by_role("link", name="Email", exact=True).click()
    page.get_by_role("heading", name="Email Grace Hopper", level=1).wait_for()
    assert page.get_by_label("To").input_value() == mail_world.address
    accessible_at_both_widths(page, axe_source, screenshots, "60-email-compose", axe_on_phone=True)
    page.get_by_role("button", name="Send").click()  # empty: the browser's own check keeps it here
    assert page.get_by_label("Subject").evaluate("e => e.validity.valueMissing")
    page.get_by_label("Subject").fill("Conference follow-up")
    page.get_by_label("Message").fill("Hi Grace,\n\nGreat to meet you at the conference.")
    page.get_by_role("button", name="Send").click()

    page.get_by_role("heading", name="Conference follow-up", level=1).wait_for()
    wait_until_sent(page)
    (message,) = mail_world.smtp.to(mail_world.address)
    assert message["Subject"] == "Conference follow-up" and message["From"] == mail_world.sender
    assert message["Message-ID"] in page.locator("dl.fields").inner_text()  # the message as it went out
    accessible_at_both_widths(page, axe_source, screenshots, "61-outbox-message", axe_on_phone=True)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Outbox").click()
    page.wait_for_url("**/console/outbox")
    row = page.get_by_role("row").filter(has_text="Conference follow-up")
    assert "Sent" in row.inner_text() and mail_world.address in row.inner_text()
    accessible_at_both_widths(page, axe_source, screenshots, "62-outbox", axe_on_phone=True)

    page.goto(f"/console/contacts/{mail_world.contact_id}")
    entry = page.locator("ol.timeline li").filter(has_text="Conference follow-up")
    assert "sent" in entry.locator(".tag").all_inner_texts()
    entry.get_by_role("link", name="Reply to Conference follow-up").click()
    page.get_by_role("heading", name="Reply to Grace Hopper", level=1).wait_for()
    assert page.get_by_label("Subject").input_value() == "Re: Conference follow-up"
    accessible_at_both_widths(page, axe_source, screenshots, "63-email-reply", axe_on_phone=True)
    page.get_by_label("Message").fill("Here are the slides.")
    page.get_by_role("button", name="Send").click()
    page.get_by_role("heading", name="Re: Conference follow-up", level=1).wait_for()
    wait_until_sent(page)
    first, reply = mail_world.smtp.to(mail_world.address)
    assert reply["In-Reply-To"] == first["Message-ID"] and reply["References"] == first["Message-ID"]


def test_an_approved_draft_email_shows_its_delivery_in_the_queue_and_the_timeline(
    page: Any, mail_world: MailWorld, axe_source: str, screenshots: Any
) -> None:
    from okyaku.agents.tools.write import DraftEmailArgs

    args = DraftEmailArgs(
        contact_id=uuid.UUID(mail_world.contact_id),
        subject="Pricing as promised",
        body="Hi Grace, here is our pricing.",
        reasoning="She asked for pricing on the call.",
    )
    services = mail_world.services
    action = propose_draft_email(services.runtime, services.agents.approvals, mail_world.org.organization_id, args)
    sign_in_with(page, mail_world.org.api_key)
    page.goto("/console/approvals")
    with page.expect_navigation():  # the approval's POST answered before the next page is asked for
        page.locator(f"#action-{action.id}").get_by_role("button", name="Approve", exact=True).click()
    deadline = time.monotonic() + 15
    while True:  # the worker thread sends after the approval's commit
        page.goto("/console/approvals?status=approved")
        delivery = page.locator(f"#action-{action.id}").get_by_text("E-mail:")
        if "sent" in delivery.inner_text():
            break
        assert time.monotonic() < deadline, delivery.inner_text()
        time.sleep(0.2)
    accessible_at_both_widths(page, axe_source, screenshots, "64-approved-draft-email", axe_on_phone=True)
    page.locator(f"#action-{action.id}").get_by_role("link", name=re.compile("^View in the Outbox")).click()
    page.get_by_role("heading", name="Pricing as promised", level=1).wait_for()
    assert "Sent" in page.locator("#delivery").inner_text()
    (message,) = [m for m in mail_world.smtp.to(mail_world.address) if m["Subject"] == "Pricing as promised"]
    assert message["From"] == mail_world.sender  # nobody asked: the reviewer sends it

    page.goto(f"/console/contacts/{mail_world.contact_id}")
    entry = page.locator("ol.timeline li").filter(has_text="Pricing as promised")
    assert "sent" in entry.locator(".tag").all_inner_texts()
