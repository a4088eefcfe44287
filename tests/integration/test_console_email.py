"""The console's e-mail pages over HTTP (no browser): what a hand-made or odd request gets — a 4xx
with the form again, never an error page of the server."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from okyaku.email.service import EmailDraft, EmailService
from okyaku.runtime import Runtime
from tests.integration.test_console import sign_in


class RecordingDispatcher:
    def __init__(self) -> None:
        self.jobs: list[Any] = []

    def dispatch(self, job: Any) -> None:
        self.jobs.append(job)


def a_contact(tenant: Any) -> str:
    address = f"ada-{uuid.uuid4().hex[:8]}@customer.example"
    response = tenant.client.post("/api/v1/contacts", json={"first_name": "Ada", "email": address})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_malformed_reply_to_is_a_422_with_the_form_not_a_server_error(console, tenant) -> None:  # type: ignore[no-untyped-def]
    contact_id = a_contact(tenant)
    token = sign_in(console, tenant.org.api_key)
    response = console.post(
        f"/console/contacts/{contact_id}/email",
        data={"csrf_token": token, "reply_to_activity_id": "not-an-id", "subject": "Hi", "body": "Hello"},
    )
    assert response.status_code == 422, response.text
    assert 'name="subject"' in response.text and "Hello" in response.text  # the form, with what was typed
    assert "reply" in response.text.lower()


def test_an_email_whose_headers_the_library_refuses_is_still_viewable(console, tenant, runtime) -> None:  # type: ignore[no-untyped-def]
    """Such an e-mail is failed by the worker ("the message could not be built"); its page in the
    Outbox must show it and why, not a 500."""
    hosted = Runtime(
        runtime.settings.model_copy(update={"notifications_email_from": "crm@okyaku.example"}),
        db=runtime.db,
        publisher=None,
    )
    outbox = EmailService(hosted, dispatcher=RecordingDispatcher())
    email = outbox.queue(tenant.id, None, EmailDraft(contact_id=uuid.UUID(a_contact(tenant)), subject="Hi", body="x"))
    with runtime.db.organization_scope(tenant.id) as session:  # as a mailbox could have stored a parent's id
        session.execute(
            text("UPDATE emails SET in_reply_to = :v WHERE id = :id"),
            {"v": "<a@b>\r\nBcc: someone@else.example", "id": email.id},
        )
    outcome = outbox.deliver(tenant.id, email.id)
    assert outcome is not None and outcome.status == "failed"

    sign_in(console, tenant.org.api_key)
    page = console.get(f"/console/outbox/{email.id}")
    assert page.status_code == 200, page.text
    assert "could not be built" in page.text and "crm@okyaku.example" in page.text
    assert "<dt>Bcc</dt>" not in page.text
