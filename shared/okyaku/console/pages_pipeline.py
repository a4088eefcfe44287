"""The pipeline board and deal stage moves: a pipeline's open deals by stage, moved by drag (a
small script that submits the card's own form) or by the stage select (no JavaScript); Won /
Lost with a reason. Every move is a version-checked deal update through the API's service, so
it is in the stage history and has its change event.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from okyaku.console import board as boards
from okyaku.console import forms
from okyaku.console import queries as qs
from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form, safe_next
from okyaku.crm.entities import ENTITIES
from okyaku.db.models import PipelineStage
from okyaku.errors import Conflict, NotFound, ValidationFailed


def owner_filter(page: Page, owner: str) -> uuid.UUID | None:
    if owner == "me":
        return page.session.user_id
    try:
        return uuid.UUID(owner) if owner else None
    except ValueError:
        return None


def move_refused(page: Page, deal_id: uuid.UUID, message: str, status_code: int, back: str) -> HTMLResponse:
    """A move that did not happen: say why and what the deal is now, with the way back."""
    with page.services.runtime.db.organization_scope(page.organization_id) as session:
        deal = ENTITIES["deal"].service.get(session, deal_id)
        now = f"{deal.name} is now in {deal.stage.name} (version {deal.version})."
    return page.render(
        "error.html",
        {"title": "Not moved", "message": f"{message} {now} Nothing was changed.", "status": status_code, "back": back},
        status_code=status_code,
    )


def pipeline_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.get("/pipeline", response_class=HTMLResponse)
    def pipeline_board(
        page: SignedInDep,
        pipeline: Annotated[str, Query(max_length=40)] = "",
        owner: Annotated[str, Query(max_length=40)] = "",
        notice: str | None = None,
    ) -> Response:
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            pipelines = qs.pipelines(session)
            chosen = next((p for p in pipelines if str(p.id) == pipeline), pipelines[0] if pipelines else None)
            view = boards.board(session, chosen, owner_filter(page, owner)) if chosen else None
            people = boards.owners(session)
            back = f"{CONSOLE}/pipeline?pipeline={chosen.id if chosen else ''}&owner={owner}"
            return page.render(
                "pipeline.html",
                {
                    "title": "Pipeline",
                    "pipelines": pipelines,
                    "board": view,
                    "owners": people,
                    "owner": owner,
                    "back": back,
                    "notice": {"moved": "Stage changed.", "closed": "Deal closed."}.get(notice or ""),
                },
            )

    @router.post("/deals/{deal_id}/stage")
    async def move_stage(request: Request, page: SignedInDep, deal_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        back = safe_next(str(form.get("next") or f"{CONSOLE}/deals/{deal_id}"))
        patch: dict[str, Any] = {"stage_id": str(form.get("stage_id") or "") or None}
        return apply_move(page, deal_id, patch, form, back, "moved")

    @router.post("/deals/{deal_id}/close")
    async def close_deal(request: Request, page: SignedInDep, deal_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        back = safe_next(str(form.get("next") or f"{CONSOLE}/deals/{deal_id}"))
        outcome = str(form.get("outcome") or "")
        reason = str(form.get("reason") or "").strip() or None
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            deal = ENTITIES["deal"].service.get(session, deal_id)
            stage = closing_stage(session_stages(session, deal.pipeline_id), outcome)
        if stage is None:
            raise NotFound(f"this pipeline has no {outcome or 'closing'} stage")
        patch: dict[str, Any] = {"stage_id": str(stage.id)}
        if outcome == "lost":
            patch["lost_reason"] = reason
        elif outcome == "won":
            patch["won_reason"] = reason
        return apply_move(page, deal_id, patch, form, back, "closed")

    return router


def session_stages(session: Session, pipeline_id: uuid.UUID) -> list[PipelineStage]:
    return list(session.scalars(select(PipelineStage).where(PipelineStage.pipeline_id == pipeline_id)))


def closing_stage(stages: list[PipelineStage], outcome: str) -> PipelineStage | None:
    ordered = sorted(stages, key=lambda s: s.position)
    if outcome == "won":
        return next((s for s in ordered if s.is_won), None)
    if outcome == "lost":
        return next((s for s in ordered if s.is_lost), None)
    return None


def apply_move(page: Page, deal_id: uuid.UUID, patch: dict[str, Any], form: Any, back: str, notice: str) -> Response:
    version_text = str(form.get("version") or "")
    version = int(version_text) if version_text.isdigit() else None
    try:
        forms.update_record(
            page.services.runtime, page.organization_id, page.session.user_id, "deal", deal_id, patch, version=version
        )
    except Conflict:
        return move_refused(page, deal_id, "Someone else changed this deal since you loaded the page.", 409, back)
    except ValidationFailed as error:
        messages = "; ".join(str(d.get("message")) for d in error.details or []) or error.message
        return move_refused(page, deal_id, f"The move was refused: {messages}.", 422, back)
    return page.redirect(back + ("&" if "?" in back else "?") + f"notice={notice}")
