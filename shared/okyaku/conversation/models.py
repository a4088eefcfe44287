"""Tables of the conversation feature (migrations 0007, 0016).

- ``conversation_analyses``: one row per analysis of an activity's text, kept as history
  (``analysis_version`` 1, 2, ... per activity). ``content_hash`` is the hash of the text that was
  analysed: an activity whose current hash has a row is analysed; a change event for unchanged text
  does nothing. ``proposal_ids`` are the pending actions made from it (only the first analysis of a
  given text makes any, so proposals exist once per version of the text).
- ``conversation_competitors``: each organization's own list of competitor names (with aliases)
  that the rules floor looks for. A table rather than a setting: organizations edit it through the
  API (``PUT /api/v1/ai/conversation/competitors``), and it is isolated by RLS like every tenant row.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from okyaku.db.models import Base, org_fk, uuid_pk

CONVERSATION_TABLES = ("conversation_analyses", "conversation_competitors", "conversation_waiting")


class ConversationAnalysisRow(Base):
    __tablename__ = "conversation_analyses"
    __table_args__ = (
        UniqueConstraint("activity_id", "analysis_version", name="uq_conversation_analyses_version"),
        Index("ix_conversation_analyses_activity", "organization_id", "activity_id", "content_hash"),
    )
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    activity_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("activities.id", ondelete="CASCADE"), nullable=False
    )
    analysis_version: Mapped[int] = mapped_column(Integer, nullable=False)
    activity_version: Mapped[int] = mapped_column(Integer, nullable=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    schema_version: Mapped[str] = mapped_column(String(10), nullable=False)
    prompt: Mapped[str] = mapped_column(String(80), nullable=False)
    model: Mapped[str] = mapped_column(String(200), nullable=False)
    method: Mapped[str] = mapped_column(String(10), nullable=False, server_default="llm")
    trigger: Mapped[str] = mapped_column(String(20), nullable=False)
    analysis: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    rules: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    dropped: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    chunks: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    prompt_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    completion_tokens: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    proposal_ids: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class ConversationCompetitor(Base):
    __tablename__ = "conversation_competitors"
    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_conversation_competitors_name"),)
    id: Mapped[uuid.UUID] = uuid_pk()
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    aliases: Mapped[list[str]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class ConversationWaiting(Base):
    __tablename__ = "conversation_waiting"
    activity_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True
    )
    organization_id: Mapped[uuid.UUID] = org_fk(index=False)
    content_hash: Mapped[str] = mapped_column(String(64), nullable=False)  # the text that could not be analysed
    reason: Mapped[str] = mapped_column(String(40), nullable=False)  # the LLM error's code, e.g. llm_unavailable
    message: Mapped[str] = mapped_column(Text, nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    last_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), nullable=False, server_default=func.now()
    )

    __table_args__ = (Index("ix_conversation_waiting_organization", "organization_id"),)
