"""Your mailboxes in the console: connect an IMAP mailbox (its password goes to the mailbox
service, which encrypts it; no page ever shows it), see each one's status, last sync and last
error, sync now, disconnect. The service is the API's (okyaku.mailboxes.service).

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form
from okyaku.errors import OkyakuError
from okyaku.tenancy import Principal

PAGE = CONSOLE + "/mailboxes"
NOTICES = {
    "connected": "Mailbox connected.",
    "synced": "Synced: the status below is the sync's.",
    "queued": "Sync queued: it runs in a moment; reload to see its status.",
    "removed": "Mailbox disconnected. Its e-mails stay in the CRM.",
}


def _principal(page: Page) -> Principal:
    session = page.session
    assert session.api_key_id is not None
    return Principal(organization_id=page.organization_id, user_id=session.user_id, api_key_id=session.api_key_id)


def _service(page: Page) -> Any:
    from okyaku.mailboxes.service import MailboxService  # loaded by the requests that use it

    return MailboxService(page.services.runtime)


def _form_values(form: Any) -> dict[str, Any]:
    folders = [line.strip() for line in str(form.get("folders") or "").splitlines() if line.strip()]
    values: dict[str, Any] = {
        "imap_host": str(form.get("imap_host") or "").strip(),
        "tls_mode": str(form.get("tls_mode") or "ssl"),
        "username": str(form.get("username") or "").strip(),
        "password": str(form.get("password") or ""),
    }
    port = str(form.get("imap_port") or "").strip()
    if port:
        values["imap_port"] = port
    if folders:
        values["folders"] = folders
    return values


def _render(page: Page, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    service = _service(page)
    try:
        mailboxes = service.list_own(_principal(page)) if page.session.user_id else []
    except OkyakuError:
        mailboxes = []
    defaults = {"imap_port": 993, "tls_mode": "ssl", "folders": "INBOX\n\\Sent"}
    return page.render(
        "mailboxes.html",
        {"title": "Mailboxes", "mailboxes": mailboxes, "values": defaults, **context},
        status_code=status_code,
    )


def mailboxes_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.get("/mailboxes", response_class=HTMLResponse)
    def mailboxes_page(page: SignedInDep, done: str | None = None) -> Response:
        context: dict[str, Any] = {"notice": NOTICES.get(done or "")}
        if page.session.user_id is None:
            context["error"] = "A mailbox belongs to a user: sign in with a user's API key, not a service key."
        return _render(page, context)

    @router.post("/mailboxes", response_class=HTMLResponse)
    async def connect(request: Request, page: SignedInDep) -> Response:
        from okyaku.mailboxes.schemas import MailboxCreate

        form = await checked_form(request, page)
        values = _form_values(form)
        shown = {**values, "password": "", "folders": "\n".join(values.get("folders") or ["INBOX", "\\Sent"])}
        shown.setdefault("imap_port", 993)
        try:
            data = MailboxCreate.model_validate(values)
        except ValidationError as error:
            problems = [f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in error.errors()]
            return _render(page, {"error": "The mailbox is not valid.", "details": problems, "values": shown}, 422)
        service = _service(page)
        try:
            mailbox = await run_in_threadpool(service.create, _principal(page), data)
        except OkyakuError as error:
            return _render(page, {"error": error.message, "values": shown}, error.status_code)
        # Sync at once, so a wrong password shows now rather than at the next scheduled run.
        queued, _report = await run_in_threadpool(service.sync_now, _principal(page), mailbox.id)
        return page.redirect(f"{PAGE}?done={'queued' if queued else 'connected'}")

    @router.post("/mailboxes/{mailbox_id}/sync", response_class=HTMLResponse)
    async def sync_now(mailbox_id: uuid.UUID, request: Request, page: SignedInDep) -> Response:
        await checked_form(request, page)
        queued, _report = await run_in_threadpool(_service(page).sync_now, _principal(page), mailbox_id)
        return page.redirect(f"{PAGE}?done={'queued' if queued else 'synced'}")

    @router.post("/mailboxes/{mailbox_id}/delete", response_class=HTMLResponse)
    async def disconnect(mailbox_id: uuid.UUID, request: Request, page: SignedInDep) -> Response:
        await checked_form(request, page)
        await run_in_threadpool(_service(page).delete, _principal(page), mailbox_id)
        return page.redirect(f"{PAGE}?done=removed")

    return router
