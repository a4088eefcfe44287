"""FastAPI wiring for AI functions: the gateway as a dependency and the ``/api/v1/ai/health`` route.

Without an API key the route says only whether the AI runs degraded; with one it gives the full
report (process-wide usage counters only to admins). The report is cached for
``LLM_HEALTH_CACHE_S`` so that a busy health check does not call Ollama on every hit."""

import logging
import threading
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from sqlalchemy import text

from okyaku.errors import OkyakuError, Unauthorized
from okyaku.http import RuntimeDep
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.health import AIHealthReport, AIHealthSummary, check_ai_health
from okyaku.runtime import Runtime
from okyaku.tenancy import authenticate

logger = logging.getLogger(__name__)


def install_llm(app: FastAPI, gateway: LLMGateway) -> None:
    app.state.llm = gateway


def get_llm(request: Request) -> LLMGateway:
    gateway: LLMGateway = request.app.state.llm
    return gateway


LLMDep = Annotated[LLMGateway, Depends(get_llm)]


def database_error(runtime: Runtime) -> str | None:
    """None when the database answers; else a stable message (the driver's text goes to the log)."""
    try:
        with runtime.db.session() as session:
            session.execute(text("SELECT 1"))
    except OkyakuError as error:
        return error.message
    except Exception:  # health reports any failure instead of failing itself
        logger.warning("database health check failed", exc_info=True)
        return "the database did not answer"
    return None


class HealthCache:
    """The last report per gateway, for ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[float, AIHealthReport]] = {}

    def report(self, gateway: LLMGateway, runtime: Runtime) -> AIHealthReport:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(id(gateway))
            if entry is not None and now - entry[0] < self.ttl_s:
                return entry[1]
        report = check_ai_health(gateway, database_check=lambda: database_error(runtime))
        with self._lock:
            self._entries[id(gateway)] = (now, report)
        return report


def ai_health_router(cache_s: float) -> APIRouter:
    router = APIRouter(tags=["ai"])
    cache = HealthCache(cache_s)

    @router.get(
        "/api/v1/ai/health",
        response_model=AIHealthReport | AIHealthSummary,
        summary="LLM and database health",
        description=(
            "Answers 200 even when degraded. Without an API key: only `status` and `degraded`; with one: "
            "`reasons`, Ollama, models, embeddings, circuit and database; admins also see usage counters."
        ),
    )
    def ai_health(
        runtime: RuntimeDep,
        llm: LLMDep,
        authorization: Annotated[str | None, Header(description="Bearer <api key>, for the details")] = None,
    ) -> Any:
        report = cache.report(llm, runtime)
        if authorization is None:
            return AIHealthSummary(status=report.status, degraded=report.degraded)
        try:
            principal = authenticate(runtime.db, authorization)
        except Unauthorized:
            raise
        except OkyakuError:  # the database is down: the report says so; nobody can be authenticated
            return AIHealthSummary(status=report.status, degraded=report.degraded)
        return report if principal.is_admin else report.model_copy(update={"usage": []})

    return router
