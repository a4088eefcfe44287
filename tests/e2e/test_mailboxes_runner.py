"""The project's template.yaml served by the local runner (what `okyaku dev` runs): a mailbox
connected over HTTP, its schedule fired, and the e-mail from a contact shows up as an activity that
the conversation function then analyses (the scripted OpenAI-compatible server stands in for
Ollama; the IMAP server is a real Dovecot)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from okyaku.config import get_settings
from okyaku.db import Database
from okyaku.local.postgres import LocalDatabase
from okyaku.local.runner import LocalRunner
from okyaku.tenancy import create_organization
from tests.e2e.test_conversation_runner import ROOT, use_environment, wait_for
from tests.support.dovecot import running_dovecot
from tests.support.openai_server import Reply, ScriptedOpenAIServer


def test_a_connected_mailbox_brings_a_contacts_email_in_and_it_is_analysed(
    pg: LocalDatabase, db: Database, openai_server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_environment(monkeypatch, pg, openai_server, MAILBOX_ENCRYPTION_KEY=Fernet.generate_key().decode())
    analysis: dict[str, Any] = {
        "summary": "Priya asks for a quote for 40 seats by Friday.",
        "sentiment": {"score": 0.4, "label": "positive"},
    }
    openai_server.responder = lambda request: Reply.json_object(analysis)
    org = create_organization(db, "Runner mailbox", "rep@runner-mailbox.example")
    headers = {"Authorization": f"Bearer {org.api_key}"}
    try:
        with (
            running_dovecot(Path(tempfile.mkdtemp(prefix="okyaku-dovecot-"))) as dovecot,
            LocalRunner(ROOT / "template.yaml", port=0, apply_environment=False) as runner,
            httpx.Client(base_url=runner.url, headers=headers, timeout=60) as client,
        ):
            dovecot.add_user("rep@runner-mailbox.example", "imap-secret")
            contact = client.post("/api/v1/contacts", json={"first_name": "Priya", "email": "priya@buyer.example"})
            assert contact.status_code == 201, contact.text
            connected = client.post(
                "/api/v1/mailboxes",
                json={
                    "imap_host": "127.0.0.1",
                    "imap_port": dovecot.port,
                    "tls_mode": "none",
                    "username": "rep@runner-mailbox.example",
                    "password": "imap-secret",
                },
            )
            assert connected.status_code == 201, connected.text
            assert "imap-secret" not in connected.text
            dovecot.append(
                "rep@runner-mailbox.example",
                "INBOX",
                b"From: Priya <priya@buyer.example>\r\nTo: rep@runner-mailbox.example\r\nSubject: Quote\r\n"
                b"Message-ID: <quote-1@buyer.example>\r\n\r\nCould you send a quote for 40 seats by Friday?\r\n",
            )
            fired = runner.fire_schedule("MailboxesFunctionSyncSchedule")
            # Locally the template's queue URL is left out: the schedule syncs each mailbox in-process.
            assert fired["failed"] == [] and fired["mailboxes"] >= 1 and "queued" not in fired

            def synced() -> dict[str, Any] | None:
                rows = client.get("/api/v1/activities", params={"contact_id": contact.json()["id"]}).json()["data"]
                return rows[0] if rows else None

            activity = wait_for(synced, "the e-mail as an activity")
            assert (activity["type"], activity["direction"]) == ("email", "inbound")
            assert activity["message_id"] == "<quote-1@buyer.example>"
            mailbox = client.get(f"/api/v1/mailboxes/{connected.json()['id']}").json()
            assert mailbox["status"] == "ok" and mailbox["messages_synced"] == 1

            def analysed() -> dict[str, Any] | None:
                answer = client.get(f"/api/v1/ai/conversation/activities/{activity['id']}").json()
                return answer if answer.get("status") == "analysed" else None

            answer = wait_for(analysed, "the e-mail's analysis")
            assert answer["history"][0]["trigger"] == "event"
    finally:
        get_settings.cache_clear()
