"""Actions asked for in chat become pending actions in the agents' approval queue, built by the
agents' own write tools (same validation, same field diff) — never a direct write."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ConfigDict, Field

from okyaku.agents.tooling import AgentTool, ToolContext
from okyaku.agents.tools.services import ToolServices
from okyaku.chat.dates import resolve_range, resolve_relative
from okyaku.chat.plan import DateRange, RelativeDate
from okyaku.chat.resolve import Candidate, find_records
from okyaku.chat.schemas import ChatAction
from okyaku.runtime import Runtime

if TYPE_CHECKING:
    from okyaku.agents.approvals import ApprovalService
    from okyaku.embeddings.search import SemanticSearch

CHAT_AGENT = "chat"


class TaskActionArgs(BaseModel):
    """The planner's create_task call: names, not ids (the service finds the records)."""

    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=5000)
    due: RelativeDate | DateRange | None = Field(default=None, description="when it is due")
    priority: str = Field(default="normal", pattern="^(low|normal|high)$")
    contact_name: str | None = Field(default=None, max_length=200)


class EmailActionArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    contact_name: str = Field(min_length=1, max_length=200)
    subject: str = Field(min_length=1, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)


@dataclass
class ActionOutcome:
    action: ChatAction | None = None
    answer: str = ""
    citations: list[Candidate] | None = None


def due_date(due: RelativeDate | DateRange | None, today: date) -> date | None:
    if due is None:
        return None
    period = resolve_relative(due, today) if isinstance(due, RelativeDate) else resolve_range(due)
    return period.start


def _run_tool(tool: AgentTool, ctx: ToolContext, args: Any) -> Any:
    # The write tools are async (the agents run them on a loop) but do blocking reads only.
    return asyncio.run(cast(Coroutine[Any, Any, Any], tool.execute(ctx, args)))


class ChatActions:
    def __init__(
        self,
        runtime: Runtime,
        approvals: ApprovalService | None,
        clock: Callable[[], datetime],
        *,
        search: SemanticSearch | None = None,
    ) -> None:
        self.runtime = runtime
        self._approvals = approvals
        self.clock = clock
        self.services = ToolServices(runtime, search=search)  # the agents' lazily built search

    @cached_property
    def approvals(self) -> ApprovalService:
        """The agents' approval queue (None given: built here). Deferred to the first action: with
        the agents' write tools it is a third of chat's cold import, and most turns are questions."""
        if self._approvals is not None:
            return self._approvals
        from okyaku.agents.approvals import ApprovalService

        return ApprovalService(self.runtime, clock=self.clock)

    def _context(self, organization_id: uuid.UUID, user_id: uuid.UUID | None, question: str) -> ToolContext:
        return ToolContext(
            runtime=self.runtime,
            organization_id=organization_id,
            execution_id=uuid.uuid4(),  # no agent run: chat's proposals carry no execution
            agent=CHAT_AGENT,
            task=question,
            requested_by=user_id,
            services=self.services,
            clock=self.clock,
        )

    def _contact(self, ctx: ToolContext, name: str) -> tuple[Candidate | None, str | None]:
        with ctx.read() as session:
            found = find_records(session, "contacts", name)
        if not found:
            return None, f'I found no contact called "{name}", so I created nothing.'
        if len(found) > 1:
            names = ", ".join(c.label for c in found[:5])
            return None, f'Several contacts match "{name}": {names}. Which one do you mean?'
        return found[0], None

    def _propose(
        self, organization_id: uuid.UUID, tool: AgentTool, ctx: ToolContext, args: Any, extra: dict[str, Any]
    ) -> ChatAction:
        proposal = _run_tool(tool, ctx, args)
        row = self.approvals.propose(
            organization_id,
            execution_id=None,
            agent=CHAT_AGENT,
            action=tool.name,
            proposal=proposal,
            low_risk=tool.low_risk,
            context={"question": ctx.task, "arguments": args.model_dump(mode="json"), **extra, **proposal.context},
            auto_apply=False,
            requested_by=ctx.requested_by,
        )
        return ChatAction(
            pending_action_id=str(row.id),
            action=tool.name,
            status=row.status,
            entity_type=row.entity_type,
            summary="",
            changes=row.changes,
        )

    def create_task(
        self,
        organization_id: uuid.UUID,
        user_id: uuid.UUID | None,
        question: str,
        args: TaskActionArgs,
        *,
        today: date,
        conversation_id: uuid.UUID,
    ) -> ActionOutcome:
        from okyaku.agents.tools.write import CreateTaskArgs, create_task  # deferred: see approvals

        ctx = self._context(organization_id, user_id, question)
        contact: Candidate | None = None
        if args.contact_name:
            contact, problem = self._contact(ctx, args.contact_name)
            if problem:
                return ActionOutcome(answer=problem)
        due = due_date(args.due, today)
        tool_args = CreateTaskArgs(
            title=args.title,
            description=args.description,
            due_date=due,
            priority=args.priority,
            contact_id=uuid.UUID(contact.entity_id) if contact else None,
            reasoning=f"Asked in chat: {question}"[:2000],
        )
        action = self._propose(organization_id, create_task, ctx, tool_args, {"conversation_id": str(conversation_id)})
        who = f" for {contact.label}" if contact else ""
        when = f", due {due.isoformat()}" if due else ""
        action.summary = f'Task "{args.title}"{who}{when}'
        answer = f'I\'ve proposed a task "{args.title}"{who}{when}. It is waiting in the approval queue: nothing changes until someone approves it.'  # noqa: E501
        return ActionOutcome(action, answer, [contact] if contact else [])

    def draft_email(
        self,
        organization_id: uuid.UUID,
        user_id: uuid.UUID | None,
        question: str,
        args: EmailActionArgs,
        *,
        conversation_id: uuid.UUID,
    ) -> ActionOutcome:
        from okyaku.agents.tools.write import DraftEmailArgs, draft_email  # deferred: see approvals

        ctx = self._context(organization_id, user_id, question)
        contact, problem = self._contact(ctx, args.contact_name)
        if problem or contact is None:
            return ActionOutcome(answer=problem or "")
        tool_args = DraftEmailArgs(
            contact_id=uuid.UUID(contact.entity_id),
            subject=args.subject,
            body=args.body,
            reasoning=f"Asked in chat: {question}"[:2000],
        )
        action = self._propose(organization_id, draft_email, ctx, tool_args, {"conversation_id": str(conversation_id)})
        action.summary = f'Email to {contact.label}: "{args.subject}"'
        answer = (
            f'I\'ve drafted an email to {contact.label} ("{args.subject}"). It is waiting in the approval queue: '
            "nothing is sent until someone approves it."
        )
        return ActionOutcome(action, answer, [contact])
