"""The mailboxes API: /api/v1/mailboxes (your IMAP connections; the password is write-only).

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from okyaku.http import PrincipalDep, create_app
from okyaku.mailboxes.schemas import MailboxCreate, MailboxOut, MailboxUpdate, SyncNowOut
from okyaku.mailboxes.service import MailboxService
from okyaku.runtime import Runtime


async def get_mailboxes(request: Request) -> MailboxService:
    service: MailboxService = request.app.state.mailboxes
    return service


MailboxesDep = Annotated[MailboxService, Depends(get_mailboxes)]


def mailboxes_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/mailboxes", tags=["mailboxes"])

    @router.post("", response_model=MailboxOut, status_code=201, summary="Connect an IMAP mailbox")
    def create_mailbox(body: MailboxCreate, principal: PrincipalDep, service: MailboxesDep) -> MailboxOut:
        return MailboxOut.model_validate(service.create(principal, body))

    @router.get("", response_model=list[MailboxOut], summary="Your mailboxes")
    def list_mailboxes(principal: PrincipalDep, service: MailboxesDep) -> list[MailboxOut]:
        return [MailboxOut.model_validate(m) for m in service.list_own(principal)]

    @router.get("/{mailbox_id}", response_model=MailboxOut, summary="One of your mailboxes, with its sync status")
    def get_mailbox(mailbox_id: uuid.UUID, principal: PrincipalDep, service: MailboxesDep) -> MailboxOut:
        return MailboxOut.model_validate(service.get(principal, mailbox_id))

    @router.patch("/{mailbox_id}", response_model=MailboxOut, summary="Change a mailbox (a new password, folders)")
    def update_mailbox(
        mailbox_id: uuid.UUID, body: MailboxUpdate, principal: PrincipalDep, service: MailboxesDep
    ) -> MailboxOut:
        return MailboxOut.model_validate(service.update(principal, mailbox_id, body))

    @router.delete("/{mailbox_id}", status_code=204, summary="Disconnect (the synced activities stay)")
    def delete_mailbox(mailbox_id: uuid.UUID, principal: PrincipalDep, service: MailboxesDep) -> Response:
        service.delete(principal, mailbox_id)
        return Response(status_code=204)

    @router.post(
        "/{mailbox_id}/sync",
        response_model=SyncNowOut,
        summary="Sync now: queued (202) where the function has a queue, else run now (200, with the report)",
        responses={202: {"model": SyncNowOut}},
    )
    def sync_mailbox(mailbox_id: uuid.UUID, principal: PrincipalDep, service: MailboxesDep) -> Response:
        queued, report = service.sync_now(principal, mailbox_id)
        body = SyncNowOut(queued=queued, report=report)
        return JSONResponse(body.model_dump(mode="json"), status_code=202 if queued else 200)

    return router


def create_mailboxes_app(service: MailboxService | None = None, runtime: Runtime | None = None) -> FastAPI:
    app = create_app(
        "Okyaku mailboxes",
        service.runtime if service is not None else runtime,
        description="Users' IMAP mailboxes, synced into the CRM as e-mail activities.",
    )
    app.state.mailboxes = service or MailboxService(app.state.runtime)

    @app.get("/api/v1/mailboxes/health", include_in_schema=False)  # before /{mailbox_id}
    def health() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(mailboxes_router())
    return app
