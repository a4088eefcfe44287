"""FastAPI wiring for AI functions: the gateway as a dependency and the ``/api/v1/ai/health`` route."""

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import text

from okyaku.errors import OkyakuError
from okyaku.http import RuntimeDep
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.health import AIHealthReport, check_ai_health
from okyaku.runtime import Runtime


def install_llm(app: FastAPI, gateway: LLMGateway) -> None:
    app.state.llm = gateway


def get_llm(request: Request) -> LLMGateway:
    gateway: LLMGateway = request.app.state.llm
    return gateway


LLMDep = Annotated[LLMGateway, Depends(get_llm)]


def database_error(runtime: Runtime) -> str | None:
    try:
        with runtime.db.session() as session:
            session.execute(text("SELECT 1"))
    except OkyakuError as error:
        return error.message
    except Exception as error:  # health reports any failure instead of failing itself
        return f"{type(error).__name__}: {error}"
    return None


def ai_health_router() -> APIRouter:
    router = APIRouter(tags=["ai"])

    @router.get(
        "/api/v1/ai/health",
        response_model=AIHealthReport,
        summary="LLM and database health",
        description="Answers 200 even when degraded; `degraded` and `reasons` say what is missing.",
    )
    def ai_health(runtime: RuntimeDep, llm: LLMDep) -> AIHealthReport:
        return check_ai_health(llm, database_check=lambda: database_error(runtime))

    return router
