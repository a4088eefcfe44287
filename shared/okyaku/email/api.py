"""/api/v1/emails: queue an e-mail to a contact (202), read its delivery status, list them.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field

from okyaku.crm.schemas import Page
from okyaku.email.models import OutgoingEmail
from okyaku.email.service import EmailDraft, EmailFilters, EmailService
from okyaku.http import ErrorResponse, PrincipalDep, create_app

EmailStatus = Literal["queued", "sending", "sent", "failed"]


class EmailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_id: uuid.UUID
    deal_id: uuid.UUID | None = None
    subject: str = Field(min_length=1, max_length=500)
    body: str = Field(min_length=1, max_length=100_000, description="plain text")
    reply_to_activity_id: uuid.UUID | None = Field(
        default=None, description="an e-mail activity to answer: sets In-Reply-To and References"
    )


class EmailOut(BaseModel):
    id: uuid.UUID
    status: EmailStatus
    contact_id: uuid.UUID | None
    deal_id: uuid.UUID | None
    activity_id: uuid.UUID | None
    pending_action_id: uuid.UUID | None
    sender: str = Field(serialization_alias="from")
    recipient: str = Field(serialization_alias="to")
    subject: str
    body: str
    message_id: str | None = Field(description="the RFC 5322 Message-ID, once sent")
    in_reply_to: str | None
    attempts: int
    next_attempt_at: datetime | None = Field(description="when it is tried again, while queued")
    error: str | None = Field(description="why the last attempt failed (the reason of a failed e-mail)")
    created_at: datetime
    sent_at: datetime | None


def email_out(email: OutgoingEmail) -> EmailOut:
    return EmailOut(
        id=email.id,
        status=email.status,
        contact_id=email.contact_id,
        deal_id=email.deal_id,
        activity_id=email.activity_id,
        pending_action_id=email.pending_action_id,
        sender=email.sender,
        recipient=email.recipient,
        subject=email.subject,
        body=email.body,
        message_id=email.message_id if email.status == "sent" else None,
        in_reply_to=email.in_reply_to,
        attempts=email.attempts,
        next_attempt_at=email.next_attempt_at if email.status == "queued" else None,
        error=email.last_error,
        created_at=email.created_at,
        sent_at=email.sent_at,
    )


def create_emails_app(service: EmailService) -> FastAPI:
    app = create_app(
        "Okyaku e-mail", service.runtime, description="Outgoing e-mail through a durable outbox (SMTP or SES)"
    )

    @app.get("/api/v1/emails/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/api/v1/emails",
        status_code=202,
        response_model=EmailOut,
        response_model_by_alias=True,
        responses={429: {"description": "EMAIL_HOURLY_LIMIT reached (Retry-After)", "model": ErrorResponse}},
    )
    def queue_email(body: EmailIn, principal: PrincipalDep) -> EmailOut:
        """Queue an e-mail to the contact: it becomes an outbound e-mail activity on the contact (and
        deal) and is sent by the worker; 429 ``email_hourly_limit`` beyond EMAIL_HOURLY_LIMIT an hour."""
        draft = EmailDraft(
            contact_id=body.contact_id,
            deal_id=body.deal_id,
            subject=body.subject,
            body=body.body,
            reply_to_activity_id=body.reply_to_activity_id,
        )
        return email_out(service.queue(principal.organization_id, principal.user_id, draft))

    @app.get("/api/v1/emails/{email_id}", response_model=EmailOut, response_model_by_alias=True)
    def get_email(email_id: uuid.UUID, principal: PrincipalDep) -> EmailOut:
        return email_out(service.get(principal.organization_id, email_id))

    @app.get("/api/v1/emails", response_model=Page[EmailOut], response_model_by_alias=True)
    def list_emails(
        principal: PrincipalDep,
        status: EmailStatus | None = None,
        contact_id: uuid.UUID | None = None,
        deal_id: uuid.UUID | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> Page[EmailOut]:
        rows, next_cursor = service.list(
            principal.organization_id,
            EmailFilters(status=status, contact_id=contact_id, deal_id=deal_id),
            limit=limit,
            cursor=cursor,
        )
        return Page[EmailOut](data=[email_out(r) for r in rows], next_cursor=next_cursor)

    return app
