"""HTTP API of the ``scoring`` and ``forecasting`` functions under /api/v1/ai/predictions."""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request

from okyaku.features import require_feature
from okyaku.http import PrincipalDep, RuntimeDep, create_app
from okyaku.predictions import schemas as s
from okyaku.predictions.explain import ExplanationWriter
from okyaku.predictions.service import PredictionService, utc_now
from okyaku.runtime import Runtime

PREFIX = "/api/v1/ai/predictions"


def require_enabled(runtime: RuntimeDep) -> None:
    require_feature(runtime.settings, "predictions")


def get_service(request: Request) -> PredictionService:
    service: PredictionService = request.app.state.predictions
    return service


ServiceDep = Annotated[PredictionService, Depends(get_service)]


def default_writer(runtime: Runtime) -> ExplanationWriter | None:
    """The LLM-backed writer when the LLM layer is installed; None means templated text only."""
    try:
        from okyaku.predictions.explain_llm import llm_writer_from_settings
    except ImportError:
        return None
    writer: ExplanationWriter | None = llm_writer_from_settings(runtime.settings)
    return writer


def prediction_service(
    runtime: Runtime | None = None,
    *,
    writer: ExplanationWriter | Literal["default"] | None = "default",
    clock: Callable[[], datetime] | None = None,
) -> PredictionService:
    """The service both functions build once per cold start, for HTTP and their other triggers."""
    runtime = runtime or Runtime()
    chosen = default_writer(runtime) if writer == "default" else writer
    return PredictionService(runtime, writer=chosen, clock=clock or utc_now)


def _make_app(
    title: str,
    runtime: Runtime | None,
    writer: ExplanationWriter | Literal["default"] | None,
    clock: Callable[[], datetime] | None,
    service: PredictionService | None,
) -> FastAPI:
    service = service or prediction_service(runtime, writer=writer, clock=clock)
    app = create_app(title, service.runtime)
    app.state.predictions = service
    return app


def scoring_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["predictions"], dependencies=[Depends(require_enabled)])

    @router.post("/lead-score/{contact_id}", response_model=s.LeadScoreOut, summary="Score a lead (0-100)")
    def lead_score(contact_id: uuid.UUID, principal: PrincipalDep, service: ServiceDep) -> Any:
        return service.lead_score(principal.organization_id, contact_id)

    @router.post("/churn-risk/{contact_id}", response_model=s.ChurnRiskOut, summary="A customer's churn risk")
    def churn_risk(contact_id: uuid.UUID, principal: PrincipalDep, service: ServiceDep) -> Any:
        return service.churn_risk(principal.organization_id, contact_id)

    @router.get("/batch-score", response_model=s.BatchPageOut, summary="All leads (or customers) by score")
    def batch_score(
        principal: PrincipalDep,
        service: ServiceDep,
        runtime: RuntimeDep,
        target: Literal["lead", "churn"] = "lead",
        limit: Annotated[int, Query(ge=1)] = 50,
        cursor: str | None = None,
        sort: Annotated[str, Query(description="-score (default), score, -scored_at or scored_at")] = "-score",
        min_score: Annotated[float | None, Query(ge=0, le=100)] = None,
    ) -> Any:
        return service.batch_scores(
            principal.organization_id,
            target=target,
            limit=min(limit, runtime.settings.api_max_page_size),
            cursor=cursor,
            sort=sort,
            min_score=min_score,
        )

    @router.get("/history/{entity}/{entity_id}", response_model=s.HistoryOut, summary="Past scores of a record")
    def history(
        entity: Literal["contact", "deal"],
        entity_id: uuid.UUID,
        principal: PrincipalDep,
        service: ServiceDep,
        target: Literal["lead_score", "churn_risk", "deal_forecast"] | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Any:
        return service.history(principal.organization_id, entity, entity_id, target=target, limit=limit)

    @router.get("/models", response_model=list[s.ModelOut], summary="The current model of each target")
    def models(principal: PrincipalDep, service: ServiceDep) -> Any:
        return [m.as_dict() for m in service.models(principal.organization_id)]

    @router.post(
        "/models/{target}/train", response_model=list[s.ModelOut], summary="Retrain now (the nightly job does it too)"
    )
    def train(target: Literal["lead", "churn", "deal"], principal: PrincipalDep, service: ServiceDep) -> Any:
        return [m.as_dict() for m in service.train(principal.organization_id, target)]

    return router


def forecasting_router() -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["forecasts"], dependencies=[Depends(require_enabled)])

    @router.post("/deal-forecast/{deal_id}", response_model=s.DealForecastOut, summary="Forecast an open deal")
    def deal_forecast(deal_id: uuid.UUID, principal: PrincipalDep, service: ServiceDep) -> Any:
        return service.deal_forecast(principal.organization_id, deal_id)

    @router.get(
        "/pipeline-forecast", response_model=s.PipelineForecastOut, summary="Expected revenue by month and stage"
    )
    def pipeline_forecast(
        principal: PrincipalDep,
        service: ServiceDep,
        months: Annotated[int, Query(ge=1, le=24)] = 6,
        simulations: Annotated[int, Query(ge=100, le=20_000)] = 5000,
        seed: Annotated[int, Query(ge=0, le=2**32 - 1, description="random seed of the simulation")] = 0,
        pipeline_id: uuid.UUID | None = None,
    ) -> Any:
        return service.pipeline_forecast(
            principal.organization_id, months=months, simulations=simulations, seed=seed, pipeline_id=pipeline_id
        )

    return router


def _health(app: FastAPI, path: str) -> None:
    @app.get(path, tags=["health"], summary="Liveness")
    def health() -> dict[str, str]:
        return {"status": "ok"}


def create_scoring_app(
    runtime: Runtime | None = None,
    *,
    writer: ExplanationWriter | Literal["default"] | None = "default",
    clock: Callable[[], datetime] | None = None,
    service: PredictionService | None = None,
) -> FastAPI:
    app = _make_app("Okyaku scoring", runtime, writer, clock, service)
    app.include_router(scoring_router())
    _health(app, "/api/v1/ai/scoring/health")
    return app


def create_forecasting_app(
    runtime: Runtime | None = None,
    *,
    writer: ExplanationWriter | Literal["default"] | None = "default",
    clock: Callable[[], datetime] | None = None,
    service: PredictionService | None = None,
) -> FastAPI:
    app = _make_app("Okyaku forecasting", runtime, writer, clock, service)
    app.include_router(forecasting_router())
    _health(app, "/api/v1/ai/forecasting/health")
    return app
