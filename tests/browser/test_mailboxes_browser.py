"""The console's Mailboxes page in real headless Chromium, against a real Dovecot: connect a
mailbox with a wrong password and see the error on it, fix it by connecting the right one and see
it synced; every control labelled, axe-core clean at laptop and phone width, the password never in
a page. Screenshots: .okyaku/screenshots/mailboxes*.png."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from okyaku.db import Database
from okyaku.llm import LLMConfig, LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.tenancy import NewOrganization, create_organization
from tests.browser.conftest import (
    LAPTOP,
    PHONE,
    UNLABELLED,
    axe_violations,
    console_runtime,
    console_server,
    fits_the_viewport,
    laptop_tab,
)
from tests.support.dovecot import Dovecot, running_dovecot
from tests.support.fixtures import llm_settings_for
from tests.support.openai_server import closed_port_url


@dataclass
class MailWorld:
    url: str
    org: NewOrganization
    address: str
    dovecot: Dovecot


@pytest.fixture(scope="module")
def mail_world(pg: LocalDatabase, db: Database) -> Iterator[MailWorld]:
    runtime = console_runtime(pg, db, mailbox_encryption_key=Fernet.generate_key())
    domain = f"mail-{uuid.uuid4().hex[:6]}.example"
    address = f"rep@{domain}"
    org = create_organization(db, f"Mail {uuid.uuid4().hex[:6]}", address)
    llm = LLMGateway(LLMConfig.from_settings(llm_settings_for(closed_port_url())))
    with (
        running_dovecot(Path(tempfile.mkdtemp(prefix="okyaku-dovecot-"))) as dovecot,
        console_server(runtime, llm, "mail-test-secret", insight_providers=()) as (url, _),
    ):
        dovecot.add_user(address, "right-password")
        yield MailWorld(url, org, address, dovecot)
    llm.close()


@pytest.fixture
def page(browser: Any, mail_world: MailWorld) -> Iterator[Any]:
    with laptop_tab(browser, mail_world.url) as tab:
        yield tab


def connect(page: Any, world: MailWorld, password: str) -> None:
    page.goto("/console/mailboxes")
    page.get_by_label("IMAP server").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(world.dovecot.port))
    page.get_by_label("Encryption").select_option("none")
    page.get_by_label("Username (usually your e-mail address)").fill(world.address)
    page.get_by_label("Password or app password").fill(password)
    page.get_by_role("button", name="Connect and sync").click()
    page.wait_for_url("**/console/mailboxes?done=connected")


def test_connect_see_the_error_fix_it_and_sync(
    page: Any, mail_world: MailWorld, axe_source: str, screenshots: Path
) -> None:
    page.goto("/console/login")
    page.get_by_label("API key").fill(mail_world.org.api_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/today")
    page.get_by_role("link", name="Mailboxes").click()
    page.wait_for_url("**/console/mailboxes")
    assert page.get_by_role("heading", name="Mailboxes", level=1).is_visible()
    assert page.evaluate(UNLABELLED) == []

    connect(page, mail_world, "wrong-password")
    row = page.get_by_role("row", name=mail_world.address)
    assert "error" in row.inner_text() and "refused the username or password" in row.inner_text()
    assert "wrong-password" not in page.content()

    # Keyboard: Disconnect is a button reached and pressed without a mouse.
    page.get_by_role("button", name=f"Disconnect {mail_world.address}").focus()
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/mailboxes?done=removed")
    assert page.get_by_text("No mailbox connected yet.").is_visible()

    mail_world.dovecot.append(
        mail_world.address,
        "INBOX",
        b"From: Zoe <zoe@customer.example>\r\nTo: " + mail_world.address.encode() + b"\r\n"
        b"Subject: Hello\r\nMessage-ID: <zoe-1@customer.example>\r\n\r\nHi there\r\n",
    )
    connect(page, mail_world, "right-password")
    assert page.get_by_role("status").inner_text() == "Mailbox connected."
    row = page.get_by_role("row", name=mail_world.address)
    cells = row.get_by_role("cell").all_inner_texts()
    assert cells[0] == "ok" and cells[1] != "never" and cells[2] == "1", cells  # status, last synced, e-mails
    assert "right-password" not in page.content()
    page.get_by_role("button", name=f"Sync now {mail_world.address}").click()
    page.wait_for_url("**/console/mailboxes?done=synced")

    failures = {}
    for size in (LAPTOP, PHONE):
        page.set_viewport_size(size)
        found = axe_violations(page, axe_source)
        if found:
            failures[size["width"]] = found
        if size is PHONE:
            assert fits_the_viewport(page), "the Mailboxes page scrolls sideways on a phone"
            page.screenshot(path=str(screenshots / "mailboxes-phone.png"), full_page=True)
    page.set_viewport_size(LAPTOP)
    page.screenshot(path=str(screenshots / "mailboxes.png"), full_page=True)
    assert failures == {}
