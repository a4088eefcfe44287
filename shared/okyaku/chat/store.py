"""Conversations and messages, per organization (RLS)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from okyaku.chat.models import ChatConversation, ChatMessage
from okyaku.errors import NotFound


def get_conversation(session: Session, conversation_id: uuid.UUID, *, for_update: bool = False) -> ChatConversation:
    row = session.get(ChatConversation, conversation_id, with_for_update=for_update)
    if row is None:
        raise NotFound(f"conversation {conversation_id} not found", details={"id": str(conversation_id)})
    return row


def create_conversation(session: Session, title: str, user_id: uuid.UUID | None) -> ChatConversation:
    row = ChatConversation(title=title[:200] or "Chat", user_id=user_id)
    session.add(row)
    session.flush()
    return row


def messages_of(session: Session, conversation_id: uuid.UUID, *, last: int | None = None) -> list[ChatMessage]:
    statement = select(ChatMessage).where(ChatMessage.conversation_id == conversation_id)
    if last is None:
        return list(session.scalars(statement.order_by(ChatMessage.seq)))
    rows = list(session.scalars(statement.order_by(ChatMessage.seq.desc()).limit(last)))
    return rows[::-1]


def append_message(
    session: Session, conversation: ChatConversation, role: str, content: str, **values: Any
) -> ChatMessage:
    seq = (
        session.scalar(
            select(func.coalesce(func.max(ChatMessage.seq), 0)).where(ChatMessage.conversation_id == conversation.id)
        )
        or 0
    ) + 1
    row = ChatMessage(conversation_id=conversation.id, seq=seq, role=role, content=content, **values)
    session.add(row)
    conversation.message_count = seq
    conversation.updated_at = func.clock_timestamp()
    session.flush()
    return row


def list_conversations(session: Session, limit: int = 50) -> list[ChatConversation]:
    return list(session.scalars(select(ChatConversation).order_by(ChatConversation.updated_at.desc()).limit(limit)))


def delete_conversation(session: Session, conversation_id: uuid.UUID) -> None:
    get_conversation(session, conversation_id)
    session.execute(delete(ChatConversation).where(ChatConversation.id == conversation_id))
