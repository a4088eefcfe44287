"""What every HTTP function shares: the app factory, the error shape, authentication.

No ``from __future__ import annotations``: FastAPI reads the dependencies' signatures once per
route, and string annotations would be evaluated again each time (≈ 60 evals for the CRM API)."""

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from okyaku.errors import OkyakuError, RateLimited, ValidationFailed, field_error
from okyaku.runtime import Runtime
from okyaku.tenancy import Principal, authenticate, authenticate_in, bearer_key
from okyaku.validation import field_details

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable")
    message: str
    details: Any = Field(default=None, description="for 422: a list of {field, message, type}")


class ErrorResponse(BaseModel):
    """The one error shape of every route."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "model": ErrorResponse}
    for status, description in {
        400: "A body that cannot be read (not JSON, wrong encoding)",
        401: "Missing or invalid API key",
        403: "Your role may not do this",
        404: "No such record in your organization",
        409: "The record changed since you read it",
        422: "Invalid input, with field-level details",
        503: "A dependency (database, LLM, queue) is unavailable",
    }.items()
}


def create_app(title: str, runtime: Runtime | None = None, *, description: str = "") -> FastAPI:
    app = FastAPI(
        title=title,
        description=description,
        version="0.1.0",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        responses=ERROR_RESPONSES,
    )
    app.state.runtime = runtime or Runtime()
    install_error_handlers(app)
    return app


def error_response(error: OkyakuError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, RateLimited) else None
    return JSONResponse(status_code=error.status_code, content=error.to_body(), headers=headers)


REQUEST_SOURCES = ("body", "query", "path", "header", "cookie")


def validation_details(errors: Any) -> list[dict[str, str]]:
    """A request's validation errors, named by field (not by where in the request they came)."""
    return field_details(errors, drop_sources=REQUEST_SOURCES)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OkyakuError)
    async def _okyaku_error(_: Request, error: OkyakuError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        details = validation_details(error.errors())
        return error_response(ValidationFailed("the request is not valid", details=details))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}
        body = {
            "error": {
                "code": codes.get(error.status_code, "http_error"),
                "message": str(error.detail),
                "details": None,
            }
        }
        return JSONResponse(status_code=error.status_code, content=body, headers=error.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        body = {"error": {"code": "internal_error", "message": "an unexpected error occurred", "details": None}}
        return JSONResponse(status_code=500, content=body)


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain ``def`` dependency on a worker thread, a hop per request for
    # what is an attribute read.
    runtime: Runtime = request.app.state.runtime
    return runtime


AuthorizationHeader = Annotated[str | None, Header(description="Bearer <api key>")]


async def get_principal(
    runtime: Annotated[Runtime, Depends(get_runtime)], authorization: AuthorizationHeader = None
) -> Principal:
    # Blocking on purpose, inside async: a function instance serves one event at a time (Lambda,
    # and each worker thread of the local runner has its own loop), so nothing else waits on this
    # loop, and a thread hop per request (FastAPI's treatment of a plain ``def``) is saved.
    return authenticate(runtime.db, authorization)


@dataclass(frozen=True)
class ReadScope:
    """A read that authenticates in its own transaction: ``with scope.session() as (principal,
    session)`` runs the key check and the read between one BEGIN and COMMIT, scoped to the key's
    organization (for the hottest routes: a transaction less per request)."""

    runtime: Runtime
    api_key: str = field(repr=False)  # never in a log line

    @contextmanager
    def session(self) -> Iterator[tuple[Principal, Session]]:
        with self.runtime.db.session() as session:
            yield authenticate_in(session, self.api_key), session


async def get_read_scope(
    runtime: Annotated[Runtime, Depends(get_runtime)], authorization: AuthorizationHeader = None
) -> ReadScope:
    return ReadScope(runtime, bearer_key(authorization))  # a missing or malformed header: 401 now


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
ReadScopeDep = Annotated[ReadScope, Depends(get_read_scope)]


def expected_version(if_match: str | None) -> int | None:
    """Read an ``If-Match`` header carrying a record version ("3", "\\"3\\"" or W/"3")."""
    if not if_match:
        return None
    match = re.fullmatch(r'\s*(?:W/)?"?(\d+)"?\s*', if_match)
    if not match:
        raise ValidationFailed(
            "If-Match must carry a record version",
            details=[field_error("If-Match", 'expected a version such as "3"')],
        )
    return int(match.group(1))
