"""What every console page shares: templates, the session cookie, sign-in and CSRF checks,
HTML error pages.

No ``from __future__ import annotations``: FastAPI reads the dependencies' annotations at run time."""

import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, unquote
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from okyaku.console import timezones
from okyaku.console.services import ConsoleServices
from okyaku.console.sessions import COOKIE_NAME, CSRF_FIELD, CSRF_HEADER, ConsoleSession, SessionSigner
from okyaku.db.models import ApiKey
from okyaku.errors import Forbidden

logger = logging.getLogger(__name__)

CONSOLE = "/console"


class SignInRequired(Exception):
    """The page needs a signed-in user; answered with a redirect to the sign-in page."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Forbidden):
    code = "csrf_refused"


def safe_next(path: str | None) -> str:
    """Only a path of this console: never another site (``//host`` or ``https://...``)."""
    if not path or path.startswith("//") or "\\" in path:
        return CONSOLE
    if path != CONSOLE and not path.startswith(CONSOLE + "/") and not path.startswith(CONSOLE + "?"):
        return CONSOLE
    return path


@dataclass
class Page:
    """The request's console context: its session, whether the cookie must be (re)sent."""

    request: Request
    services: ConsoleServices
    session: ConsoleSession
    fresh_cookie: bool

    @property
    def signer(self) -> SessionSigner:
        return self.services.signer

    @property
    def organization_id(self) -> uuid.UUID:
        assert self.session.organization_id is not None
        return self.session.organization_id

    @property
    def zone(self) -> ZoneInfo:
        """The zone dates and times are shown and typed in: the browser's, else the organization's."""
        cookie = unquote(self.request.cookies.get(timezones.COOKIE) or "")  # forms.js encodes the "/"
        return timezones.chosen_zone(cookie, self.services.runtime.settings.ai_chat_timezone)

    def posted_zone(self, form: Mapping[str, Any]) -> ZoneInfo:
        """The zone a posted form was rendered in (its hidden field), else the page's."""
        posted = timezones.zone_named(str(form.get(timezones.FIELD) or ""))
        return posted if posted is not None else self.zone

    @property
    def csrf_token(self) -> str:
        return self.signer.csrf_token(self.session)

    def render(self, name: str, context: Mapping[str, Any] | None = None, *, status_code: int = 200) -> HTMLResponse:
        started = time.perf_counter()
        template = self.services.templates.get_template(name)
        html = template.render(
            {
                "session": self.session,
                "csrf_token": self.csrf_token,
                "path": self.request.url.path,
                "query": self.request.url.query,
                "static": CONSOLE + "/static",
                "console": CONSOLE,
                "chat_enabled": self.services.chat_enabled,
                "bell": self._bell if self.session.signed_in else None,
                "zone": self.zone,
                **(context or {}),
            }
        )
        response = HTMLResponse(html, status_code=status_code)
        response.headers["Server-Timing"] = f"render;dur={(time.perf_counter() - started) * 1000:.1f}"
        self.finish(response)
        return response

    def _bell(self) -> dict[str, int] | None:
        """The notifications bell's counts, read when base.html draws the bell."""
        from okyaku.console.notifications import unread_counts

        return unread_counts(self.services, self.organization_id, self.session.user_id)

    def redirect(self, location: str) -> Response:
        response = RedirectResponse(location, status_code=303)
        self.finish(response)
        return response

    def finish(self, response: Response) -> None:
        """Send the session cookie when it is new, and keep pages out of shared caches."""
        response.headers.setdefault("Cache-Control", "no-store")
        if self.fresh_cookie:
            set_session_cookie(self.request, response, self.signer, self.session)

    def start_session(self, session: ConsoleSession) -> None:
        self.session = session
        self.fresh_cookie = True


def is_https(request: Request, setting: str) -> bool:
    if setting in ("true", "false"):
        return setting == "true"
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return forwarded == "https" or request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, signer: SessionSigner, session: ConsoleSession) -> None:
    services: ConsoleServices = request.app.state.console
    response.set_cookie(
        COOKIE_NAME,
        signer.dumps(session),
        max_age=int(signer.ttl_s),
        path=CONSOLE,
        httponly=True,
        samesite="lax",
        secure=is_https(request, services.secure_cookie),
    )


def get_page(request: Request) -> Page:
    services: ConsoleServices = request.app.state.console
    session = services.signer.loads(request.cookies.get(COOKIE_NAME))
    if session is None:
        return Page(request, services, services.signer.new_anonymous(), fresh_cookie=True)
    return Page(request, services, session, fresh_cookie=False)


def key_still_valid(page: Page) -> bool:
    """The session's API key exists and is not revoked: revoking a key ends its console sessions."""
    session = page.session
    assert session.organization_id is not None
    with page.services.runtime.db.organization_scope(session.organization_id) as db_session:
        found = db_session.scalar(select(ApiKey.id).where(ApiKey.id == session.api_key_id, ApiKey.revoked_at.is_(None)))
    return found is not None


def signed_in_page(page: Annotated[Page, Depends(get_page)]) -> Page:
    if not page.session.signed_in or not key_still_valid(page):
        target = page.request.url.path + (f"?{page.request.url.query}" if page.request.url.query else "")
        raise SignInRequired(target)
    return page


async def checked_form(request: Request, page: Page) -> Mapping[str, Any]:
    """The posted form, after its CSRF token (field or htmx header) matched the session's."""
    form = await request.form()
    token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not page.signer.csrf_valid(page.session, str(token) if token is not None else None):
        logger.warning("console form refused: CSRF token missing or wrong on %s", request.url.path)
        raise CsrfRefused("this form did not come from your console session; reload the page and try again")
    return form


def login_redirect(next_path: str) -> str:
    return f"{CONSOLE}/login?next={quote(next_path, safe='/')}"


PageDep = Annotated[Page, Depends(get_page)]
SignedInDep = Annotated[Page, Depends(signed_in_page)]
