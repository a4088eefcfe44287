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
from fastapi.testclient import TestClient

from okyaku.config import Settings
from okyaku.console.app import create_console_app
from okyaku.console.services import console_services
from okyaku.console.sessions import SessionSigner
from okyaku.crm.api import create_crm_app
from okyaku.db import Database
from okyaku.llm import LLMConfig, LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.runtime import Runtime
from okyaku.tenancy import NewOrganization, create_organization
from tests.browser.conftest import LoopbackServer, axe_violations
from tests.browser.test_console_browser import LAPTOP, PHONE, check_accessible, fits_the_viewport, shot
from tests.conftest import RecordingPublisher
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
    settings = Settings(
        database_url=pg.app_url,
        database_migration_url=pg.owner_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_starttls=False,
    )
    runtime = Runtime(settings, db=db, publisher=RecordingPublisher())
    sender = f"rep-{uuid.uuid4().hex[:6]}@ours.example"
    org = create_organization(db, f"Mail {uuid.uuid4().hex[:6]}", sender)
    address = f"grace-{uuid.uuid4().hex[:6]}@customer.example"
    with TestClient(create_crm_app(runtime), headers={"Authorization": f"Bearer {org.api_key}"}) as client:
        contact = client.post(
            "/api/v1/contacts", json={"first_name": "Grace", "last_name": "Hopper", "email": address}
        ).json()
    llm = LLMGateway(LLMConfig.from_settings(llm_settings_for("http://127.0.0.1:9/v1")))  # never called here
    services = console_services(
        runtime,
        llm=llm,
        signer=SessionSigner("mail-test-secret", ttl_s=3600),
        embedder=HashingEmbedder(),
        explanations="template",
    )
    try:
        with LoopbackServer(create_console_app(services)) as server:
            yield MailWorld(server.url, org, contact["id"], address, sender, smtp, services)
    finally:
        llm.close()
        smtp.stop()


@pytest.fixture
def page(browser: Any, mail_world: MailWorld) -> Iterator[Any]:
    context = browser.new_context(viewport=LAPTOP, base_url=mail_world.url)
    tab = context.new_page()
    yield tab
    context.close()


def accessible_at_both_widths(page: Any, axe_source: str, screenshots: Any, name: str) -> None:
    check_accessible(page)
    assert axe_violations(page, axe_source) == []
    shot(page, screenshots, name)
    page.set_viewport_size(PHONE)
    assert fits_the_viewport(page), (name, page.evaluate(WIDE))
    assert axe_violations(page, axe_source) == []
    shot(page, screenshots, name + "-phone")
    page.set_viewport_size(LAPTOP)


WIDE = """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(-4).map(e => e.tagName + '.' + e.className + ' ' + (e.textContent || '').slice(0, 60))"""


def wait_until_sent(page: Any) -> None:
    """The worker thread sends after the redirect: reload the message page until it says so."""
    deadline = time.monotonic() + 15
    while "Sent" not in page.locator("#delivery").inner_text():
        assert time.monotonic() < deadline, page.locator("#delivery").inner_text()
        time.sleep(0.2)
        page.reload()


def sign_in(page: Any, mail_world: MailWorld) -> None:
    page.goto("/console/login")
    page.get_by_label("API key").fill(mail_world.org.api_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/today")


def test_compose_and_send_from_a_contact_see_it_in_the_outbox_and_the_timeline_then_reply(
    page: Any, mail_world: MailWorld, axe_source: str, screenshots: Any
) -> None:
    sign_in(page, mail_world)
    page.goto(f"/console/contacts/{mail_world.contact_id}")
    page.get_by_role("link", name="Email", exact=True).click()
    page.get_by_role("heading", name="Email Grace Hopper", level=1).wait_for()
    assert page.get_by_label("To").input_value() == mail_world.address
    accessible_at_both_widths(page, axe_source, screenshots, "60-email-compose")
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
    accessible_at_both_widths(page, axe_source, screenshots, "61-outbox-message")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Outbox").click()
    page.wait_for_url("**/console/outbox")
    row = page.get_by_role("row").filter(has_text="Conference follow-up")
    assert "Sent" in row.inner_text() and mail_world.address in row.inner_text()
    accessible_at_both_widths(page, axe_source, screenshots, "62-outbox")

    page.goto(f"/console/contacts/{mail_world.contact_id}")
    entry = page.locator("ol.timeline li").filter(has_text="Conference follow-up")
    assert "sent" in entry.locator(".tag").all_inner_texts()
    entry.get_by_role("link", name="Reply to Conference follow-up").click()
    page.get_by_role("heading", name="Reply to Grace Hopper", level=1).wait_for()
    assert page.get_by_label("Subject").input_value() == "Re: Conference follow-up"
    accessible_at_both_widths(page, axe_source, screenshots, "63-email-reply")
    page.get_by_label("Message").fill("Here are the slides.")
    page.get_by_role("button", name="Send").click()
    page.get_by_role("heading", name="Re: Conference follow-up", level=1).wait_for()
    wait_until_sent(page)
    first, reply = mail_world.smtp.to(mail_world.address)
    assert reply["In-Reply-To"] == first["Message-ID"] and reply["References"] == first["Message-ID"]


def test_an_approved_draft_email_shows_its_delivery_in_the_queue_and_the_timeline(
    page: Any, mail_world: MailWorld, axe_source: str, screenshots: Any
) -> None:
    import asyncio

    from okyaku.agents.tooling import ToolContext
    from okyaku.agents.tools.services import ToolServices
    from okyaku.agents.tools.write import DraftEmailArgs, draft_email

    runtime = mail_world.services.runtime
    organization_id = mail_world.org.organization_id
    ctx = ToolContext(
        runtime=runtime,
        organization_id=organization_id,
        execution_id=uuid.uuid4(),
        agent="deal_assistant",
        task="follow up with Grace",
        requested_by=None,
        services=ToolServices(runtime),
    )
    args = DraftEmailArgs(
        contact_id=uuid.UUID(mail_world.contact_id),
        subject="Pricing as promised",
        body="Hi Grace, here is our pricing.",
        reasoning="She asked for pricing on the call.",
    )
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:  # Playwright's loop runs on this thread: the tool gets its own
        proposal = pool.submit(asyncio.run, draft_email.execute(ctx, args)).result()  # type: ignore[arg-type]
    action = mail_world.services.agents.approvals.propose(
        organization_id,
        execution_id=None,
        agent="deal_assistant",
        action="draft_email",
        proposal=proposal,
        low_risk=False,
        context={},
    )
    sign_in(page, mail_world)
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
    accessible_at_both_widths(page, axe_source, screenshots, "64-approved-draft-email")
    page.locator(f"#action-{action.id}").get_by_role("link", name=re.compile("^View in the Outbox")).click()
    page.get_by_role("heading", name="Pricing as promised", level=1).wait_for()
    assert "Sent" in page.locator("#delivery").inner_text()
    (message,) = [m for m in mail_world.smtp.to(mail_world.address) if m["Subject"] == "Pricing as promised"]
    assert message["From"] == mail_world.sender  # nobody asked: the reviewer sends it

    page.goto(f"/console/contacts/{mail_world.contact_id}")
    entry = page.locator("ol.timeline li").filter(has_text="Pricing as promised")
    assert "sent" in entry.locator(".tag").all_inner_texts()
