"""The web console (``console`` function): server-rendered pages under /console, with sign-in,
static assets and HTML error pages. Domain services are called in-process.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import hashlib
import importlib
import logging
import threading
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from okyaku.console import pages_anomalies
from okyaku.console.pages_ai import ai_router
from okyaku.console.pages_conversation import conversation_router
from okyaku.console.pages_email import email_router
from okyaku.console.pages_forms import forms_router
from okyaku.console.pages_import import import_router
from okyaku.console.pages_insights import insights_router
from okyaku.console.pages_mailboxes import mailboxes_router
from okyaku.console.pages_notifications import notifications_router
from okyaku.console.pages_pipeline import pipeline_router
from okyaku.console.pages_records import records_router
from okyaku.console.pages_work import work_router
from okyaku.console.services import ConsoleServices
from okyaku.console.web import (
    CONSOLE,
    PageDep,
    SignInRequired,
    checked_form,
    get_page,
    login_redirect,
    safe_next,
)
from okyaku.db.models import Organization, User
from okyaku.errors import OkyakuError, Unauthorized
from okyaku.tenancy import authenticate

logger = logging.getLogger(__name__)

LANDING = CONSOLE + "/today"
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str


def load_static() -> dict[str, StaticFile]:
    """The vendored and own assets, read once: served from memory with an ETag."""
    assets: dict[str, StaticFile] = {}
    for entry in files("okyaku.console").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in STATIC_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            assets[entry.name] = StaticFile(body, STATIC_TYPES[suffix], etag)
    return assets


class DeferredPages(BaseRoute):
    """A page module's routes, imported at the first request under one of its paths.

    For the pages whose module pulls in a whole feature at import (chat's service, the agents'
    approval queue): a console cold start serving any other page does not load it. Every route of
    the module must be under one of ``prefixes`` (tests/unit/test_cold_imports.py checks it)."""

    def __init__(self, app: FastAPI, prefixes: tuple[str, ...], factory: str) -> None:
        self.app_ = app
        self.prefixes = prefixes
        self.factory = factory  # "module:function" returning the module's APIRouter
        self._routes: list[BaseRoute] | None = None
        self._lock = threading.Lock()

    def loaded_routes(self) -> list[BaseRoute]:
        with self._lock:
            if self._routes is None:
                module, function = self.factory.split(":")
                router: APIRouter = getattr(importlib.import_module(module), function)()
                # Routes made as app.include_router makes them (the app's dependency overrides apply).
                holder = APIRouter(dependency_overrides_provider=self.app_)
                holder.include_router(router)
                self._routes = list(holder.routes)
            return self._routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            return Match.NONE, {}
        partial: tuple[Match, Scope] | None = None
        for route in self.loaded_routes():
            match, child = route.matches(scope)
            if match is Match.FULL:
                return match, {**child, "okyaku.page_route": route}
            if match is Match.PARTIAL and partial is None:
                partial = (match, {**child, "okyaku.page_route": route})
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["okyaku.page_route"].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for route in self.loaded_routes():
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)


def include_deferred(app: FastAPI, prefixes: tuple[str, ...], factory: str) -> None:
    app.router.routes.append(DeferredPages(app, prefixes, factory))


def redirect_page(location: str) -> Response:
    """A 303 with a link in its body, for clients that do not follow redirects."""
    body = f'<!doctype html><title>Okyaku</title><a href="{location}">Continue to {location}</a>'
    return HTMLResponse(body, status_code=303, headers={"Location": location})


def create_console_app(services: ConsoleServices) -> FastAPI:
    app = FastAPI(title="Okyaku console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = services
    app.state.runtime = services.runtime
    assets = load_static()

    # The dashboard is /console: API Gateway's /console/{proxy+} does not match "/console/".
    # Today is where a rep starts: the landing page of "/" and of a sign-in with nowhere to go back to.
    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return redirect_page(LANDING)

    @app.get(CONSOLE + "/", include_in_schema=False)
    def console_slash() -> Response:
        return redirect_page(LANDING)

    @app.get(CONSOLE + "/static/{name}", include_in_schema=False)
    def static(name: str, request: Request) -> Response:
        asset = assets.get(name)
        if asset is None:
            return Response("not found", status_code=404, media_type="text/plain")
        headers = {"ETag": asset.etag, "Cache-Control": "public, max-age=3600"}
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.content_type, headers=headers)

    @app.get(CONSOLE + "/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(CONSOLE + "/login", response_class=HTMLResponse)
    def login_form(page: PageDep, next: str | None = None) -> Response:
        if page.session.signed_in:
            return page.redirect(safe_next(next) if next else LANDING)
        return page.render("login.html", {"title": "Sign in", "next": safe_next(next) if next else LANDING})

    @app.post(CONSOLE + "/login")
    async def login(request: Request, page: PageDep) -> Response:
        form = await checked_form(request, page)
        next_path = safe_next(str(form.get("next"))) if form.get("next") else LANDING
        key = str(form.get("api_key") or "").strip()
        try:
            principal = authenticate(services.runtime.db, f"Bearer {key}")
        except Unauthorized:
            context = {"title": "Sign in", "next": next_path, "error": "That API key is not valid (or was revoked)."}
            return page.render("login.html", context, status_code=401)
        with services.runtime.db.organization_scope(principal.organization_id) as session:
            organization = session.get(Organization, principal.organization_id)
            user = session.get(User, principal.user_id) if principal.user_id else None
            label = user.email if user else "API key"
            org_name = organization.name if organization else ""
        page.start_session(
            services.signer.signed_in(
                organization_id=principal.organization_id,
                user_id=principal.user_id,
                api_key_id=principal.api_key_id,
                user_label=label,
                organization_name=org_name,
            )
        )
        logger.info("console sign-in", extra={"organization_id": str(principal.organization_id)})
        return page.redirect(next_path)

    @app.post(CONSOLE + "/logout")
    async def logout(request: Request, page: PageDep) -> Response:
        await checked_form(request, page)
        page.start_session(services.signer.new_anonymous())
        return page.redirect(CONSOLE + "/login?signed_out=1")

    # Chat's and the agents' pages are imported at their first request (see DeferredPages).
    if services.chat_enabled:
        include_deferred(app, (CONSOLE + "/chat",), "okyaku.console.pages_chat:chat_router")
    include_deferred(app, (CONSOLE + "/approvals", CONSOLE + "/runs"), "okyaku.console.pages_agents:agents_router")
    app.include_router(ai_router())
    # Before the record pages: /contacts/new is not a record id.
    app.include_router(forms_router())
    app.include_router(pipeline_router())
    app.include_router(work_router())
    app.include_router(import_router())
    app.include_router(email_router())
    app.include_router(mailboxes_router())
    app.include_router(records_router())
    # Conversation insights, anomalies, weekly insights, notifications: POSTs and pages of their own
    # (a POST to /activities/summarize is no record route's: those are GETs or end in /edit, /delete).
    app.include_router(conversation_router())
    app.include_router(pages_anomalies.anomalies_router())
    app.include_router(insights_router())
    app.include_router(notifications_router())
    install_html_errors(app)
    return app


def install_html_errors(app: FastAPI) -> None:
    """Errors as pages: 404 for what is not in your organization, 403 for a refused form..."""

    def error_page(request: Request, status: int, title: str, message: str) -> Response:
        page = get_page(request)
        if request.headers.get("accept", "").startswith("application/json"):
            body = {"error": {"code": "http_error", "message": message, "details": None}}
            from fastapi.responses import JSONResponse

            return JSONResponse(body, status_code=status)
        return page.render("error.html", {"title": title, "message": message, "status": status}, status_code=status)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, error: SignInRequired) -> Response:
        location = login_redirect(error.next_path)
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"HX-Redirect": location})
        return RedirectResponse(location, status_code=303)

    @app.exception_handler(OkyakuError)
    async def _okyaku(request: Request, error: OkyakuError) -> Response:
        titles = {404: "Not found", 403: "Refused", 409: "Conflict", 422: "Invalid input", 503: "Unavailable"}
        message = error.message
        if error.status_code == 404:
            message = "There is no such record in your organization."
        return error_page(request, error.status_code, titles.get(error.status_code, "Error"), message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        # A malformed id in a path is a page that does not exist.
        if any(e.get("loc", ("",))[0] == "path" for e in error.errors()):
            return error_page(request, 404, "Not found", "There is no such page or record.")
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in error.errors())
        return error_page(request, 422, "Invalid input", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        message = "There is no such page." if error.status_code == 404 else str(error.detail)
        return error_page(request, error.status_code, "Not found" if error.status_code == 404 else "Error", message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        logger.exception("console error on %s", request.url.path)
        return error_page(request, 500, "Something went wrong", "An unexpected error occurred; it has been logged.")
