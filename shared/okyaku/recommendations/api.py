"""HTTP API of the ``recommendations`` function: /api/v1/ai/recommendations/... and /api/v1/ai/priorities.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request

from okyaku.config import Settings
from okyaku.features import require_feature
from okyaku.http import PrincipalDep, RuntimeDep, create_app
from okyaku.recommendations import schemas as s
from okyaku.recommendations.explain import CardWriter
from okyaku.recommendations.service import RecommendationService

PREFIX = "/api/v1/ai/recommendations"


def require_enabled(runtime: RuntimeDep) -> None:
    require_feature(runtime.settings, "recommendations")


def get_service(request: Request) -> RecommendationService:
    service: RecommendationService = request.app.state.recommendations
    return service


ServiceDep = Annotated[RecommendationService, Depends(get_service)]


def default_writer(settings: Settings) -> CardWriter:
    """The LLM-backed writer (Ollama at OLLAMA_BASE_URL); it falls back to the template itself."""
    from okyaku.llm.gateway import LLMGateway
    from okyaku.recommendations.explain import LLMCardWriter

    return LLMCardWriter(LLMGateway.from_settings(settings))


def recommendations_router() -> APIRouter:
    router = APIRouter(tags=["recommendations"], dependencies=[Depends(require_enabled)])

    @router.get(f"{PREFIX}/acceptance", response_model=s.AcceptanceOut, summary="Acceptance rate per type")
    def acceptance(principal: PrincipalDep, service: ServiceDep, days: Annotated[int, Query(ge=1, le=365)] = 90) -> Any:
        return service.acceptance(principal.organization_id, days=days)

    @router.get(f"{PREFIX}/{{recommendation_id}}/explain", response_model=s.ExplainOut, summary="Why, and what to say")
    def explain(recommendation_id: uuid.UUID, principal: PrincipalDep, service: ServiceDep) -> Any:
        return service.explain(principal.organization_id, recommendation_id, principal.user_id)

    @router.post(
        f"{PREFIX}/{{recommendation_id}}/apply",
        response_model=s.ApplyOut,
        summary="Propose the card's write (approval queue); a second apply changes nothing",
    )
    def apply(recommendation_id: uuid.UUID, principal: PrincipalDep, service: ServiceDep) -> Any:
        return service.apply(principal.organization_id, recommendation_id, principal.user_id)

    @router.post(f"{PREFIX}/{{recommendation_id}}/feedback", response_model=s.CardOut, summary="Feedback on a card")
    def feedback(recommendation_id: uuid.UUID, body: s.FeedbackIn, principal: PrincipalDep, service: ServiceDep) -> Any:
        return service.feedback(
            principal.organization_id,
            recommendation_id,
            principal.user_id,
            body.feedback,
            until=body.until,
            comment=body.comment,
        )

    @router.get(
        f"{PREFIX}/{{entity_type}}/{{entity_id}}",
        response_model=s.CardListOut,
        summary="Ranked next-best actions for a deal, contact or company",
    )
    def for_entity(
        entity_type: Literal["deal", "contact", "company"],
        entity_id: uuid.UUID,
        principal: PrincipalDep,
        service: ServiceDep,
    ) -> Any:
        return service.for_entity(principal.organization_id, entity_type, entity_id, principal.user_id)

    @router.get("/api/v1/ai/priorities", response_model=s.PrioritiesOut, summary="Today's list for the caller")
    def priorities(
        principal: PrincipalDep, service: ServiceDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
    ) -> Any:
        return service.priorities(principal.organization_id, principal.user_id, limit=limit)

    return router


def create_recommendations_app(service: RecommendationService) -> FastAPI:
    app = create_app(
        "Okyaku recommendations",
        service.runtime,
        description="Next-best actions from the CRM's facts, ranked by expected value, explained and applied.",
    )
    app.state.recommendations = service
    app.include_router(recommendations_router())

    @app.get(f"{PREFIX}/health", tags=["health"], summary="Liveness")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
