"""The project's template.yaml served by the local runner as ``okyaku dev`` runs it without
SMTP_HOST: an e-mail queued over HTTP (the runner's API Gateway v2 events) is sent by the emails
function to the local catcher and kept as a file, and the sweep schedule runs over every
organization."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from okyaku.cli.dev import _local_mail
from okyaku.config import get_settings
from okyaku.db import Database
from okyaku.local.postgres import LocalDatabase
from okyaku.local.runner import LocalRunner
from okyaku.tenancy import create_organization
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_okyaku_dev_sends_to_its_local_catcher_through_the_emails_function(
    pg: LocalDatabase, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "DATABASE_URL": pg.app_url,
        "DATABASE_MIGRATION_URL": pg.owner_url,
        "AI_CONVERSATION_ENABLED": "false",  # not what this test is about
        "OLLAMA_EMBEDDING_MODEL": "local:all-minilm-l6-v2",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("SMTP_HOST", "SMTP_PORT", "SMTP_STARTTLS", "EMAIL_TRANSPORT", "NOTIFICATIONS_EMAIL_FROM"):
        monkeypatch.setenv(name, "")  # whatever _local_mail sets is removed after the test
        monkeypatch.delenv(name)
    monkeypatch.delenv("CHANGE_EVENTS_QUEUE_URL", raising=False)
    catcher = _local_mail(tmp_path)  # what `okyaku dev` does before it starts the runner
    get_settings.cache_clear()
    org = create_organization(db, "Runner e-mail", "rep@runner-mail.example")
    headers = {"Authorization": f"Bearer {org.api_key}"}
    try:
        with (
            LocalRunner(ROOT / "template.yaml", port=0) as runner,
            httpx.Client(base_url=runner.url, headers=headers, timeout=60) as client,
        ):
            person = client.post("/api/v1/contacts", json={"first_name": "Ada", "email": "ada@customer.example"})
            assert person.status_code == 201, person.text
            queued = client.post(
                "/api/v1/emails",
                json={"contact_id": person.json()["id"], "subject": "From the runner", "body": "Hello"},
            )
            assert queued.status_code == 202, queued.text
            path = f"/api/v1/emails/{queued.json()['id']}"

            def settled() -> dict[str, str] | None:
                email: dict[str, str] = client.get(path).json()
                return email if email["status"] in ("sent", "failed") else None

            sent = wait_for(settled, "the send")
            assert sent["status"] == "sent", sent
            (caught,) = catcher.messages
            assert caught.rcpt_tos == ("ada@customer.example",)
            assert caught.message["Message-ID"] == sent["message_id"] and caught.message["From"] == org_email()
            assert len(list((tmp_path / "mail").glob("*.eml"))) == 1

            # The sweep goes over every organization of the (shared) database; ours has nothing
            # left to send, so this e-mail is neither sent again nor changed.
            report = runner.fire_schedule("EmailsFunctionSweep")
            assert report["organizations"] >= 1
            assert [m for m in catcher.messages if "ada@customer.example" in m.rcpt_tos] == [caught]
            assert client.get(path).json() == sent
    finally:
        catcher.stop()
        get_settings.cache_clear()


def org_email() -> str:
    return "rep@runner-mail.example"
