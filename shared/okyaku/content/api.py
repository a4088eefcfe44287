"""The content API (``content`` function): /api/v1/ai/content/* plus /api/v1/ai/health.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

from typing import Any

from fastapi import APIRouter, FastAPI

from okyaku.content.schemas import (
    AdaptRequest,
    AdaptResponse,
    ContentStatus,
    GenerateRequest,
    GenerateResponse,
    HashtagsRequest,
    HashtagsResponse,
    ImproveRequest,
    ImproveResponse,
    VariationsRequest,
    VariationsResponse,
)
from okyaku.content.service import ContentService
from okyaku.http import PrincipalDep, create_app
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.web import LLMDep, ai_health_router, install_llm
from okyaku.runtime import Runtime

_LLM_DOWN: dict[int | str, dict[str, Any]] = {
    503: {"description": "The LLM is unavailable (or the content feature is disabled)"}
}


def content_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/ai/content", tags=["ai content"])

    @router.post("/generate", response_model=GenerateResponse, responses=_LLM_DOWN, summary="Write a post")
    def generate(body: GenerateRequest, _: PrincipalDep, llm: LLMDep) -> GenerateResponse:
        return ContentService(llm).generate(body)

    @router.post("/variations", response_model=VariationsResponse, responses=_LLM_DOWN, summary="Variations of a post")
    def variations(body: VariationsRequest, _: PrincipalDep, llm: LLMDep) -> VariationsResponse:
        return ContentService(llm).variations(body)

    @router.post(
        "/adapt",
        response_model=AdaptResponse,
        responses={**_LLM_DOWN, 400: {"description": "source and target platform are the same"}},
        summary="Adapt a post to another platform",
    )
    def adapt(body: AdaptRequest, _: PrincipalDep, llm: LLMDep) -> AdaptResponse:
        return ContentService(llm).adapt(body)

    @router.post("/improve", response_model=ImproveResponse, responses=_LLM_DOWN, summary="Improve a post")
    def improve(body: ImproveRequest, _: PrincipalDep, llm: LLMDep) -> ImproveResponse:
        return ContentService(llm).improve(body)

    @router.post(
        "/hashtags",
        response_model=HashtagsResponse,
        responses={**_LLM_DOWN, 400: {"description": "the platform does not use hashtags"}},
        summary="Suggest hashtags",
    )
    def hashtags(body: HashtagsRequest, _: PrincipalDep, llm: LLMDep) -> HashtagsResponse:
        return ContentService(llm).hashtags(body)

    @router.get("/status", response_model=ContentStatus, summary="Is AI content available, and with what")
    def status(_: PrincipalDep, llm: LLMDep) -> ContentStatus:
        return ContentService(llm).status()

    return router


def create_content_app(runtime: Runtime | None = None, llm: LLMGateway | None = None) -> FastAPI:
    app = create_app(
        "Okyaku AI content",
        runtime,
        description="Social and email content from the LLM, within each platform's limits.",
    )
    install_llm(app, llm or LLMGateway.from_settings(app.state.runtime.settings))
    app.include_router(content_router())
    app.include_router(ai_health_router(app.state.runtime.settings.llm_health_cache_s))
    return app
