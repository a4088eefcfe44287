"""E-mail in the console: compose and send to a contact (or reply to an e-mail activity), and the
Outbox: what was sent (under ``okyaku dev``, what the local catcher took), each message viewable.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from okyaku.console.services import ConsoleServices
from okyaku.console.web import CONSOLE, SignedInDep, checked_form
from okyaku.db.models import Activity, Contact
from okyaku.email.messages import build_message, reply_subject
from okyaku.email.models import OutgoingEmail
from okyaku.email.service import EmailDraft, EmailFilters, EmailService
from okyaku.errors import NotFound, RateLimited, ValidationFailed

STATUS_LABELS = {"queued": "Queued", "sending": "Sending", "sent": "Sent", "failed": "Failed"}


def email_service(services: ConsoleServices) -> EmailService:
    """One per console process: its worker threads send what the console queues."""
    existing = getattr(services, "_email_service", None)
    if existing is None:
        existing = EmailService(services.runtime)
        setattr(services, "_email_service", existing)  # noqa: B010 (a cache on the dataclass)
    return existing


def email_states(services: ConsoleServices, organization_id: uuid.UUID, ids: Iterable[str]) -> dict[str, Any]:
    """e-mail id -> its outbox row, for the approval queue's approved drafts."""
    wanted = [uuid.UUID(i) for i in ids if i]
    if not wanted:
        return {}
    from sqlalchemy import select

    with services.runtime.db.organization_scope(organization_id) as session:
        rows = list(session.scalars(select(OutgoingEmail).where(OutgoingEmail.id.in_(wanted))))
    return {str(r.id): r for r in rows}


def email_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    def compose_context(page: Any, contact_id: uuid.UUID, reply_to: uuid.UUID | None) -> dict[str, Any]:
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            contact = session.get(Contact, contact_id)
            if contact is None:
                raise NotFound("no such contact")
            parent = session.get(Activity, reply_to) if reply_to else None
            if reply_to and (parent is None or parent.type != "email"):
                raise NotFound("no such e-mail to reply to")
            name = " ".join(p for p in (contact.first_name, contact.last_name) if p) or contact.email or "contact"
            return {
                "title": f"Reply to {name}" if parent else f"Email {name}",
                "contact": contact,
                "contact_name": name,
                "parent": parent,
                "subject": reply_subject(parent.subject) if parent else "",
                "body": "",
                "errors": {},
            }

    @router.get("/contacts/{contact_id}/email", response_class=HTMLResponse)
    def compose(page: SignedInDep, contact_id: uuid.UUID, reply_to: uuid.UUID | None = None) -> Response:
        return page.render("email_compose.html", compose_context(page, contact_id, reply_to))

    @router.post("/contacts/{contact_id}/email")
    async def send(request: Request, page: SignedInDep, contact_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        reply_raw = str(form.get("reply_to_activity_id") or "").strip()
        subject = str(form.get("subject") or "").strip()
        body = str(form.get("body") or "").strip()
        try:
            reply_to = uuid.UUID(reply_raw) if reply_raw else None
        except ValueError:  # a hand-made post: the form again, not a server error
            context = compose_context(page, contact_id, None)
            context.update({"subject": subject, "body": body, "problem": "The e-mail to reply to is not a valid id."})
            return page.render("email_compose.html", context, status_code=422)
        errors = {}
        if not subject:
            errors["subject"] = "Write a subject."
        if not body:
            errors["body"] = "Write the message."
        context = compose_context(page, contact_id, reply_to)
        context.update({"subject": subject, "body": body})
        if not errors:
            try:
                email = email_service(page.services).queue(
                    page.organization_id,
                    page.session.user_id,
                    EmailDraft(contact_id=contact_id, subject=subject[:500], body=body, reply_to_activity_id=reply_to),
                )
                return page.redirect(f"{CONSOLE}/outbox/{email.id}?queued=1")
            except RateLimited as error:
                context["problem"] = f"{error.message}. Try again in {error.retry_after_s // 60 + 1} minutes."
                return page.render("email_compose.html", context, status_code=429)
            except ValidationFailed as error:
                context["problem"] = error.message
                return page.render("email_compose.html", context, status_code=422)
        context["errors"] = errors
        return page.render("email_compose.html", context, status_code=422)

    @router.get("/outbox", response_class=HTMLResponse)
    def outbox(
        page: SignedInDep,
        status: str | None = None,
        cursor: Annotated[str | None, Query(max_length=500)] = None,
    ) -> Response:
        chosen = status if status in STATUS_LABELS else None
        rows, next_cursor = email_service(page.services).list(
            page.organization_id, EmailFilters(status=chosen), limit=50, cursor=cursor
        )
        return page.render(
            "outbox.html",
            {
                "title": "Outbox",
                "emails": rows,
                "next_cursor": next_cursor,
                "status": chosen,
                "statuses": STATUS_LABELS,
                "catcher": page.services.runtime.settings.smtp_host in ("127.0.0.1", "localhost")
                and not page.services.runtime.settings.smtp_starttls,
            },
        )

    @router.get("/outbox/{email_id}", response_class=HTMLResponse)
    def message(page: SignedInDep, email_id: uuid.UUID, queued: int = 0) -> Response:
        email = email_service(page.services).get(page.organization_id, email_id)
        try:
            rendered = build_message(email)
            headers = [
                (k, str(v)) for k, v in rendered.items() if k not in ("Content-Type", "Content-Transfer-Encoding")
            ]
        except (ValueError, TypeError):  # the worker failed it for this reason; show what is stored
            headers = [("From", email.sender), ("To", email.recipient), ("Subject", email.subject)]
        return page.render(
            "outbox_message.html",
            {
                "title": email.subject,
                "email": email,
                "headers": headers,
                "statuses": STATUS_LABELS,
                "queued": bool(queued),
            },
        )

    return router
