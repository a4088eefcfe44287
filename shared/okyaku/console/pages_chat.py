"""The chat panel: questions about the CRM answered by the chat service (okyaku.chat) in-process,
streamed to the page over server-sent events (htmx's SSE extension), with the page's record as
context, tables, and citations as record chips.

The question is POSTed (CSRF-checked); the answer comes from a GET event stream whose URL carries
a short-lived ticket signed for this session (EventSource can only GET). Without JavaScript the
same form posts a full page with the answer. Behind API Gateway a Lambda response is buffered, so
the events arrive together at the end; locally (and under uvicorn) they arrive as written.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import logging
from collections.abc import Iterator
from html import escape
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError

from okyaku.chat.schemas import ChatRequest, ChatResponse
from okyaku.chat.service import ChatService
from okyaku.console import queries as qs
from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form
from okyaku.errors import OkyakuError
from okyaku.tenancy import Principal

logger = logging.getLogger(__name__)


def chat_service(page: Page) -> ChatService:
    service = page.services.chat
    assert service is not None  # the routes exist only when it does
    return service


def principal_of(page: Page) -> Principal:
    assert page.session.api_key_id is not None
    return Principal(page.organization_id, page.session.user_id, page.session.api_key_id)


def chat_request(payload: dict[str, Any]) -> ChatRequest:
    """The form's fields (or a ticket's) as the chat service's request; invalid input is a 422."""
    context = None
    if payload.get("context_type") and payload.get("context_id"):
        context = {"entity_type": payload["context_type"], "entity_id": payload["context_id"]}
    return ChatRequest.model_validate(
        {
            "message": str(payload.get("message") or "").strip(),
            "conversation_id": payload.get("conversation_id") or None,
            "context": context,
        }
    )


def sse(event: str, html: str) -> str:
    """One server-sent event; every line of the HTML gets its own ``data:`` field."""
    lines = html.splitlines() or [""]
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def answer_view(response: ChatResponse) -> dict[str, Any]:
    chips = []
    for citation in response.citations:
        plural = qs.PLURAL.get(citation.entity_type)
        href = f"{CONSOLE}/{plural}/{citation.entity_id}" if plural else None
        chips.append({"label": citation.label, "href": href, "type": citation.entity_type})
    return {"response": response, "chips": chips}


def chat_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.post("/chat")
    async def ask(request: Request, page: SignedInDep) -> Response:
        form = await checked_form(request, page)
        fields = {k: str(v) for k, v in form.items() if k != "csrf_token"}
        try:
            question = chat_request(fields)
        except ValidationError:
            return page.render(
                "chat_error.html", {"message": "Ask a question (up to 2,000 characters)."}, status_code=422
            )
        if request.headers.get("hx-request"):
            ticket = page.signer.sign_ticket(page.session, question.model_dump(mode="json"))
            return page.render("chat_turn.html", {"question": question.message, "ticket": ticket})
        try:
            answer = chat_service(page).ask(principal_of(page), question)
        except OkyakuError as error:
            return page.render(
                "chat_page.html",
                {"title": "Chat", "question": question.message, "error": error.message},
                status_code=200,
            )
        return page.render("chat_page.html", {"title": "Chat", "question": question.message, **answer_view(answer)})

    @router.get("/chat/stream")
    def stream(page: SignedInDep, t: str = "") -> Response:
        payload = page.signer.open_ticket(page.session, t)
        if payload is None:
            html = page.services.templates.get_template("chat_error.html").render(
                message="This question expired; ask it again."
            )
            return StreamingResponse(iter([sse("final", html), sse("done", "")]), media_type="text/event-stream")
        question = ChatRequest.model_validate(payload)
        events = chat_service(page).ask_stream(principal_of(page), question)
        templates = page.services.templates

        def body() -> Iterator[str]:
            try:
                for kind, value in events:
                    if kind == "delta":
                        yield sse("delta", escape(str(value)))
                    else:
                        yield sse(
                            "final",
                            templates.get_template("chat_answer.html").render(
                                {**answer_view(value), "console": CONSOLE, "oob": True}
                            ),
                        )
            except OkyakuError as error:
                yield sse("final", templates.get_template("chat_error.html").render(message=error.message))
            except Exception:
                logger.exception("chat stream failed")
                message = "The answer could not be completed; please ask again."
                yield sse("final", templates.get_template("chat_error.html").render(message=message))
            yield sse("done", "")

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    return router
