"""The chat API (``chat`` function): /api/v1/ai/chat, its SSE stream, and stored conversations.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import StreamingResponse

from okyaku.chat import store
from okyaku.chat.execute import read_only
from okyaku.chat.schemas import (
    ChatMessageOut,
    ChatRequest,
    ChatResponse,
    ConversationList,
    ConversationOut,
    ConversationSummary,
)
from okyaku.chat.service import ChatService
from okyaku.errors import OkyakuError
from okyaku.features import require_feature
from okyaku.http import PrincipalDep, create_app
from okyaku.llm.web import install_llm
from okyaku.tenancy import Principal

_DOWN: dict[int | str, dict[str, Any]] = {503: {"description": "The database is unavailable or chat is disabled"}}


def sse(event: str, payload: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(payload, default=str, ensure_ascii=False)}\n\n"


def chat_router(service: ChatService) -> APIRouter:
    router = APIRouter(prefix="/api/v1/ai/chat", tags=["ai chat"])

    @router.post("", response_model=ChatResponse, responses=_DOWN, summary="Ask a question about your CRM")
    def ask(body: ChatRequest, principal: PrincipalDep) -> ChatResponse:
        return service.ask(principal, body)

    @router.post(
        "/stream",
        responses={200: {"content": {"text/event-stream": {}}}, **_DOWN},
        summary="Ask, with the answer streamed as Server-Sent Events",
        description="`delta` events carry text as it is written; one `final` event carries the whole response "
        "(its `answer` is authoritative); an `error` event ends a stream that failed.",
    )
    def ask_stream(body: ChatRequest, principal: PrincipalDep) -> StreamingResponse:
        events = service.ask_stream(principal, body)
        first = next(events)  # errors before the first event (404, disabled) are plain HTTP errors

        def body_events() -> Iterator[str]:
            kind, value = first
            yield _event(kind, value)
            try:
                for kind, value in events:
                    yield _event(kind, value)
            except OkyakuError as error:
                yield sse("error", error.to_body())

        return StreamingResponse(body_events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @router.get("/conversations", response_model=ConversationList, summary="Your organization's conversations")
    def conversations(principal: PrincipalDep) -> ConversationList:
        with _reading(service, principal) as session:
            rows = store.list_conversations(session)
            return ConversationList(
                conversations=[ConversationSummary.model_validate(r, from_attributes=True) for r in rows]
            )

    @router.get(
        "/conversations/{conversation_id}", response_model=ConversationOut, summary="A conversation with its messages"
    )
    def conversation(conversation_id: uuid.UUID, principal: PrincipalDep) -> ConversationOut:
        with _reading(service, principal) as session:
            row = store.get_conversation(session, conversation_id)
            messages = [
                ChatMessageOut.model_validate(m, from_attributes=True) for m in store.messages_of(session, row.id)
            ]
            summary = ConversationSummary.model_validate(row, from_attributes=True)
            return ConversationOut(**summary.model_dump(), messages=messages)

    @router.delete("/conversations/{conversation_id}", status_code=204, summary="Delete a conversation")
    def delete(conversation_id: uuid.UUID, principal: PrincipalDep) -> Response:
        require_feature(service.runtime.settings, "chat")
        with service.runtime.db.organization_scope(principal.organization_id) as session:
            store.delete_conversation(session, conversation_id)
        return Response(status_code=204)

    return router


def _event(kind: str, value: Any) -> str:
    if kind == "final":
        return sse("final", value.model_dump(mode="json"))
    return sse("delta", {"text": value})


def _reading(service: ChatService, principal: Principal) -> Any:
    require_feature(service.runtime.settings, "chat")
    return read_only(
        service.runtime.db, principal.organization_id, timeout_ms=service.timeout_ms, zone=service.zone_name
    )


def create_chat_app(service: ChatService) -> FastAPI:
    app = create_app("Okyaku chat", service.runtime, description="Questions about your CRM, answered from its records.")
    if service.llm is not None:
        install_llm(app, service.llm)
    app.include_router(chat_router(service))
    return app
