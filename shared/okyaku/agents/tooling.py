"""Declaring the tools agents call: an argument schema validated before the tool runs, whether it
writes, and an async ``execute`` that gets a :class:`ToolContext`. A write tool's ``execute``
returns a :class:`Proposal` (turned into a pending action by the runner), never a write."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session

from okyaku.clock import utc_now
from okyaku.errors import OkyakuError, ValidationFailed
from okyaku.llm.types import Tool
from okyaku.runtime import Runtime
from okyaku.validation import field_details

if TYPE_CHECKING:
    from okyaku.agents.tools.services import ToolServices


class ToolArgs(BaseModel):
    """Arguments of a tool; unknown fields are refused so a typo is an error, not ignored."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


class ToolFailed(OkyakuError):
    """A tool could not do what was asked (bad reference, nothing to change, limit reached)."""

    status_code = 422
    code = "tool_failed"


@dataclass(frozen=True)
class Proposal:
    """What a write tool wants to happen; becomes a pending action, never a write."""

    operation: Literal["create", "update"]
    entity_type: str
    entity_id: uuid.UUID | None
    changes: dict[str, dict[str, Any]]  # field -> {"before", "after"} (+ labels for ids)
    reasoning: str
    base_version: int | None = None
    context: dict[str, Any] = field(default_factory=dict)


A = TypeVar("A", bound=ToolArgs)
Execute = Callable[["ToolContext", Any], Awaitable[Any]]


@dataclass(frozen=True)
class AgentTool:
    """A name, a description, an argument schema (validated before it runs), whether it writes,
    and an async ``execute``. A write tool's ``execute`` returns a :class:`Proposal`."""

    name: str
    description: str
    arguments: type[ToolArgs]
    execute: Execute
    writes: bool = False
    low_risk: bool = False  # may be applied without review when AI_REQUIRE_APPROVAL_FOR_WRITES=false

    def llm_tool(self) -> Tool:
        return Tool(self.name, self.description, self.arguments, writes=self.writes)

    def parse(self, raw: Mapping[str, Any]) -> ToolArgs:
        try:
            return self.arguments.model_validate(dict(raw))
        except ValidationError as error:
            raise ValidationFailed(
                f"invalid arguments for {self.name}", details=field_details(error, whole="(arguments)")
            ) from error

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "writes": self.writes,
            "low_risk": self.low_risk,
            "parameters": self.arguments.model_json_schema(),
        }


def tool(
    name: str, description: str, arguments: type[A], *, writes: bool = False, low_risk: bool = False
) -> Callable[[Callable[[ToolContext, A], Awaitable[Any]]], AgentTool]:
    """Declare a tool from an ``async def (ctx, args)``."""
    if low_risk and not writes:
        raise ValueError("only write tools have a risk level")

    def wrap(function: Callable[[ToolContext, A], Awaitable[Any]]) -> AgentTool:
        return AgentTool(name, description, arguments, function, writes=writes, low_risk=low_risk)

    return wrap


@dataclass
class ToolContext:
    """What a tool may use: the caller's organization (RLS), read sessions, shared services."""

    runtime: Runtime
    organization_id: uuid.UUID
    execution_id: uuid.UUID
    agent: str
    task: str
    requested_by: uuid.UUID | None
    services: ToolServices
    clock: Callable[[], datetime] = utc_now

    @contextmanager
    def read(self, statement_timeout_ms: int = 10_000) -> Iterator[Session]:
        """A read-only transaction in the caller's organization: a read tool cannot write."""
        with self.runtime.db.organization_scope(self.organization_id) as session:
            session.execute(text("SET TRANSACTION READ ONLY"))
            session.execute(text(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"))
            yield session
