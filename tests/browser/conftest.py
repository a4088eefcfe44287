"""Real headless Chromium for the console's browser tests: Debian's ``chromium`` (installed by
``make browser-setup``; Playwright cannot download a browser here), one browser per session.

Screenshots of every page go to .okyaku/screenshots/ (git-ignored): they are the artefacts."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from okyaku.config import Settings
from okyaku.console.app import create_console_app
from okyaku.console.services import ConsoleServices, console_services
from okyaku.console.sessions import SessionSigner
from okyaku.crm.api import create_crm_app
from okyaku.db import Database
from okyaku.llm import LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.runtime import Runtime
from okyaku.tenancy import NewOrganization
from tests.support.openai_server import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("OKYAKU_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = ROOT / ".okyaku" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Package scope, not session: Playwright's sync API keeps an asyncio loop running in the main
# thread while it is open, and every later test that runs a loop there would fail.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser-setup` (apt-get install chromium)", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


class LoopbackServer:
    """An ASGI app served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from tests.conftest import free_port

        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="console-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


AXE_RUN = """async () => (await axe.run(document, {
  runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}
})).violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))
}))"""
AXE = Path(os.environ.get("OKYAKU_AXE", Path.home() / ".cache" / "okyaku" / "axe-core-4.14.1" / "axe.min.js"))


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's axe.min.js (from the npm package, fetched by `make browser-setup`)."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `make browser-setup` (npm pack axe-core)", pytrace=False)
    return AXE.read_text(encoding="utf-8")


def axe_violations(page: Any, axe_source: str, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's WCAG 2 A/AA violations of the page as it is now, of the given impacts."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe_source)
    result = page.evaluate(AXE_RUN)
    return [f"{v['impact']} {v['id']}: {v['help']} at {v['nodes']}" for v in result if v["impact"] in impacts]


# The helpers every console page test uses: its viewports, screenshots, sign-in, the checks of a page.
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 900}
UNLABELLED = """[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.outerHTML)"""
# What sticks out on the right when a page scrolls sideways: said in the failure, to find it fast.
WIDE = """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(-4).map(e => e.tagName + '.' + e.className + ' ' + (e.textContent || '').slice(0, 60))"""


@dataclass
class ConsoleWorld:
    """One organization's console on a loopback port, its services and the scripted model behind them."""

    url: str
    services: ConsoleServices
    runtime: Runtime
    openai: ScriptedOpenAIServer
    ours: NewOrganization
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def organization_id(self) -> uuid.UUID:
        return self.ours.organization_id


def console_runtime(pg: LocalDatabase, db: Database, **settings: Any) -> Runtime:
    """A Runtime over the test Postgres whose events go to a recording publisher: a world's base."""
    from tests.conftest import RecordingPublisher

    config = Settings(database_url=pg.app_url, database_migration_url=pg.owner_url, **settings)
    return Runtime(config, db=db, publisher=RecordingPublisher())


def api_client(runtime: Runtime, api_key: str) -> TestClient:
    """The CRM API as one organization's key holder: how the worlds seed their records."""
    return TestClient(create_crm_app(runtime), headers={"Authorization": f"Bearer {api_key}"})


@contextmanager
def console_server(
    runtime: Runtime, llm: LLMGateway, secret: str, **options: Any
) -> Iterator[tuple[str, ConsoleServices]]:
    """The console app on a loopback port: its URL and its services (``options`` go to console_services)."""
    signer = SessionSigner(secret, ttl_s=3600)
    services = console_services(runtime, llm=llm, signer=signer, explanations="template", **options)
    with LoopbackServer(create_console_app(services)) as server:
        yield server.url, services


@contextmanager
def laptop_tab(browser: Any, url: str) -> Iterator[Any]:
    """A fresh browser context (no cookies) at laptop width on the console, and its one tab."""
    context = browser.new_context(viewport=LAPTOP, base_url=url)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in_with(page: Any, api_key: str) -> None:
    page.goto("/console/login")
    page.get_by_label("API key").fill(api_key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/today")  # Today is the landing page


def shot(page: Any, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def fits_the_viewport(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def check_accessible(page: Any) -> None:
    """Every control has a label, the page has its landmarks, and the first Tab reaches the skip link."""
    assert page.evaluate(UNLABELLED) == []
    assert page.locator("main#main").count() == 1 and page.locator("h1").count() == 1
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"


def at_phone_width(page: Any, screenshots: Path, name: str, axe_source: str | None = None) -> None:
    """The page at phone width: no sideways scrolling (and axe-clean there too, given ``axe_source``),
    with its ``-phone`` screenshot; then back to laptop width."""
    page.set_viewport_size(PHONE)
    assert fits_the_viewport(page), (f"{name} scrolls sideways on a phone", page.evaluate(WIDE))
    if axe_source is not None:
        assert axe_violations(page, axe_source) == []
    shot(page, screenshots, name + "-phone")
    page.set_viewport_size(LAPTOP)


def both_widths(page: Any, screenshots: Path, name: str, axe_source: str | None = None) -> None:
    """Screenshots at laptop and phone width, the phone one with its checks (see at_phone_width)."""
    shot(page, screenshots, name)
    at_phone_width(page, screenshots, name, axe_source)


def accessible_at_both_widths(
    page: Any, axe_source: str, screenshots: Path, name: str, *, fresh: bool = True, axe_on_phone: bool = False
) -> None:
    """axe-clean, every control labelled, no sideways scrolling on a phone; on a freshly loaded page
    (``fresh``) the first Tab also reaches the skip link; ``axe_on_phone``: axe-clean at phone width too."""
    if fresh:
        check_accessible(page)
    else:
        assert page.evaluate(UNLABELLED) == []
    assert axe_violations(page, axe_source) == []
    both_widths(page, screenshots, name, axe_source if axe_on_phone else None)
