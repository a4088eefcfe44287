"""The conversation API (``conversation`` function): /api/v1/ai/conversation/*.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Query

from okyaku.conversation.responses import ActivityAnalysisOut, AnalyzeTextRequest, CompetitorList, TextAnalysisOut
from okyaku.conversation.service import ConversationService
from okyaku.http import PrincipalDep, create_app

_DEGRADED: dict[int | str, dict[str, Any]] = {
    503: {"description": "The database is unavailable, or the conversation feature is disabled"}
}


def conversation_router(service: ConversationService) -> APIRouter:
    router = APIRouter(prefix="/api/v1/ai/conversation", tags=["conversation intelligence"])

    @router.get(
        "/activities/{activity_id}",
        response_model=ActivityAnalysisOut,
        responses=_DEGRADED,
        summary="An activity's analysis, its version history, its proposals and the rules floor",
    )
    def get_analysis(activity_id: uuid.UUID, principal: PrincipalDep) -> ActivityAnalysisOut:
        return service.activity_analysis(principal.organization_id, activity_id)

    @router.post(
        "/activities/{activity_id}/analyze",
        response_model=ActivityAnalysisOut,
        responses=_DEGRADED,
        summary="Analyse an activity now (force: again, even if its text has an analysis)",
    )
    def analyze(
        activity_id: uuid.UUID,
        principal: PrincipalDep,
        force: bool = Query(default=False, description="Re-run the model on unchanged text (adds a version)"),
    ) -> ActivityAnalysisOut:
        return service.analyse_now(principal.organization_id, activity_id, force=force)

    @router.post(
        "/analyze-text",
        response_model=TextAnalysisOut,
        responses=_DEGRADED,
        summary="Analyse a draft email or note in real time; nothing is stored",
    )
    def analyze_text(body: AnalyzeTextRequest, principal: PrincipalDep) -> TextAnalysisOut:
        return service.analyse_text(principal.organization_id, body)

    @router.get("/competitors", response_model=CompetitorList, summary="The competitor names the rules floor finds")
    def get_competitors(principal: PrincipalDep) -> CompetitorList:
        return CompetitorList(competitors=service.competitors(principal.organization_id))

    @router.put("/competitors", response_model=CompetitorList, summary="Replace the organization's competitor list")
    def put_competitors(body: CompetitorList, principal: PrincipalDep) -> CompetitorList:
        return CompetitorList(competitors=service.replace_competitors(principal.organization_id, body.competitors))

    return router


def create_conversation_app(service: ConversationService) -> FastAPI:
    app = create_app(
        "Okyaku conversation intelligence",
        service.runtime,
        description="Summaries, next steps, objections and proposed record updates from calls, meetings, "
        "emails and notes. Every extracted item quotes the text it came from.",
    )
    app.include_router(conversation_router(service))
    return app
