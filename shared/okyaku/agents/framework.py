"""The agent framework: agent definitions and the ReAct loop on OpenAI tool calling. Tools are
declared in ``tooling.py``, limits in ``limits.py``, messages built in ``messages.py``, and
every step recorded by ``execution_log.py``.

Safety rests on two rules enforced here, not in prompts:
- what a tool returns reaches the model only as data: a ``tool`` message holding one JSON
  document inside ``<tool_result>`` tags (with ``<``/``>`` escaped so CRM text cannot close the
  block), never as system or user text;
- a write tool cannot write: its ``execute`` only returns a :class:`Proposal`, which the runner
  turns into a pending action. Applying is done by the approval queue (``approvals.py``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from string import Template
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, literal, select, union_all
from sqlalchemy.orm import Session

from okyaku.agents.execution_log import ExecutionLog, RunInProgress, steps_of
from okyaku.agents.grounding import Evidence, Verdict, check_answer, vocabulary_of
from okyaku.agents.limits import AgentLimits
from okyaku.agents.messages import (
    MAX_RESULT_CHARS,
    as_data,
    error_payload,
    proposal_payload,
    task_message,
    tool_message,
)
from okyaku.agents.models import AgentExecution
from okyaku.agents.tooling import AgentTool, Proposal, ToolArgs, ToolContext, ToolFailed, tool
from okyaku.clock import utc_now
from okyaku.db.models import Company, Contact, Deal
from okyaku.errors import DependencyUnavailable, OkyakuError, ValidationFailed, public_error
from okyaku.llm.errors import LLMToolCallInvalid
from okyaku.llm.types import Message, Tool, ToolCall, ToolCallResult, system, user
from okyaku.runtime import Runtime
from okyaku.validation import field_details

if TYPE_CHECKING:
    from okyaku.agents.approvals import ApprovalService
    from okyaku.agents.tools.services import ToolServices
    from okyaku.llm.gateway import LLMGateway

# The names code built on the framework imports from here; each lives in its own module.
__all__ = [
    "MAX_RESULT_CHARS",
    "AgentDefinition",
    "AgentLimits",
    "AgentRunner",
    "AgentTool",
    "ExecutionLog",
    "Preload",
    "Proposal",
    "RunInProgress",
    "RunOutcome",
    "ToolArgs",
    "ToolContext",
    "ToolFailed",
    "as_data",
    "error_payload",
    "steps_of",
    "task_message",
    "tool",
    "tool_message",
    "utc_now",
]

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_INVALID = 2  # model turns in a row with invalid tool calls before the run gives up
NUDGE_ANSWER = "Give your final answer now, as text."
NUDGE_TOOLS = (
    "You have not called any tool, so your answer rests on no data and cannot be used. Call the tools "
    "listed to get the facts, then answer only from their results."
)


# --- agents --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preload:
    """A read the runner makes before the first model turn (the record in focus), shown to the
    model as if it had called the tool itself, so that it starts from the facts."""

    tool: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class AgentDefinition:
    name: str
    description: str
    prompt: str  # a string.Template: $rules, $tools, $today, $max_iterations
    prompt_version: str
    tools: tuple[AgentTool, ...]
    context_model: type[BaseModel]
    default_task: str
    preload: Callable[[BaseModel], list[Preload]] = lambda _: []

    def tool(self, name: str) -> AgentTool | None:
        return next((t for t in self.tools if t.name == name), None)

    def validate_context(self, raw: Mapping[str, Any]) -> BaseModel:
        try:
            return self.context_model.model_validate(dict(raw))
        except ValidationError as error:
            raise ValidationFailed(
                f"invalid context for the {self.name} agent", details=field_details(error, prefix="context")
            ) from error

    def system_prompt(self, rules: str, limits: AgentLimits, today: str) -> str:
        listing = "\n".join(
            f"- {t.name}{' (proposes a change for human approval)' if t.writes else ''}: {t.description}"
            for t in self.tools
        )
        rules_text = Template(rules).substitute(max_iterations=limits.max_iterations).strip()
        return (
            Template(self.prompt)
            .substitute(rules=rules_text, tools=listing, today=today, max_iterations=limits.max_iterations)
            .strip()
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "prompt_version": self.prompt_version,
            "default_task": self.default_task,
            "context": self.context_model.model_json_schema(),
            "read_only": not any(t.writes for t in self.tools),
            "tools": [t.describe() for t in self.tools],
        }


# --- the loop ------------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    status: str
    stop_reason: str
    answer: str | None = None
    error: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None  # the answer's check (Verdict.as_dict)


class _Stop(Exception):
    def __init__(self, status: str, reason: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.error = error


class AgentRunner:
    """Runs one queued execution to its end: completed (a final answer grounded in the tool
    results), inconclusive (an answer that is not: kept, marked unverified; its proposals stand),
    stopped (a limit was reached; its proposals stand) or failed (LLM down, invalid calls, a bug;
    its proposals are withdrawn, so nothing half-done is left to approve)."""

    def __init__(
        self,
        runtime: Runtime,
        llm: LLMGateway,
        agents: Mapping[str, AgentDefinition],
        approvals: ApprovalService,
        services: ToolServices,
        *,
        rules: str,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.llm = llm
        self.agents = agents
        self.approvals = approvals
        self.services = services
        self.rules = rules
        self.clock = clock
        self.monotonic = monotonic

    @property
    def limits(self) -> AgentLimits:
        return AgentLimits.from_settings(self.runtime.settings)

    def run_blocking(self, organization_id: uuid.UUID, execution_id: uuid.UUID) -> RunOutcome | None:
        # A private loop, not asyncio.run: that would unset the thread's event loop, which Mangum
        # needs when the same warm Lambda next serves an HTTP request.
        loop = asyncio.new_event_loop()
        try:
            return loop.run_until_complete(self.run(organization_id, execution_id))
        finally:
            loop.close()

    async def run(self, organization_id: uuid.UUID, execution_id: uuid.UUID) -> RunOutcome | None:
        """``None`` when the execution is not there or already ended (a duplicate message);
        :class:`RunInProgress` while another worker runs it."""
        log = ExecutionLog(self.runtime, organization_id, execution_id)
        limits = self.limits
        execution = log.claim(self.clock(), stale_after_s=limits.time_budget_s + 120)
        if execution is None:
            return None
        stored = {k: v for k, v in (execution.limits or {}).items() if k in limits.as_dict()}
        limits = AgentLimits(**{**limits.as_dict(), **stored})  # the limits of when it was asked
        definition = self.agents.get(execution.agent)
        run = _Run(self, log, execution, definition, limits)
        outcome = await run.execute()
        if outcome.status == "failed":
            self.approvals.withdraw_execution(
                organization_id, execution_id, reason=f"the run failed: {outcome.stop_reason}"
            )
        log.finish(
            self.clock(),
            outcome.status,
            outcome.stop_reason,
            answer=outcome.answer,
            error=outcome.error,
            model=run.model,
            verification=outcome.verification,
        )
        logger.info("agent %s run %s %s (%s)", execution.agent, execution_id, outcome.status, outcome.stop_reason)
        return outcome


class _Run:
    """The state of one run while it executes."""

    def __init__(
        self,
        runner: AgentRunner,
        log: ExecutionLog,
        execution: AgentExecution,
        definition: AgentDefinition | None,
        limits: AgentLimits,
    ) -> None:
        self.runner = runner
        self.log = log
        self.execution = execution
        self.definition = definition
        self.limits = limits
        self.started = runner.monotonic()
        self.tokens = 0
        self.iteration = 0
        self.model: str | None = None
        self.proposals: dict[str, uuid.UUID] = {}  # identical proposals within a run are one
        self.results: list[Any] = []  # what successful tool calls returned: what an answer may rest on
        self.tool_calls = 0  # successful tool calls the model made (preloads are the runner's)
        self.attempted_calls = 0  # tool calls the model made, successful or not
        self.vocabulary: frozenset[str] = frozenset()
        self.context = ToolContext(
            runtime=runner.runtime,
            organization_id=execution.organization_id,
            execution_id=execution.id,
            agent=execution.agent,
            task=execution.task,
            requested_by=execution.requested_by,
            services=runner.services,
            clock=runner.clock,
        )

    def now(self) -> datetime:
        return self.runner.clock()

    def elapsed_s(self) -> float:
        return self.runner.monotonic() - self.started

    async def execute(self) -> RunOutcome:
        try:
            answer = await self._loop()
            verdict = self._verify(answer)
            if verdict.grounded:
                return RunOutcome("completed", "final_answer", answer=answer, verification=verdict.as_dict())
            assert verdict.reason is not None
            return RunOutcome("inconclusive", verdict.reason, answer=answer or None, verification=verdict.as_dict())
        except _Stop as stop:
            detail = {"code": stop.reason, **(stop.error or {})}
            self.log.step(self.iteration, "limit" if stop.status == "stopped" else "error", self.now(), error=detail)
            return RunOutcome(stop.status, stop.reason, error=detail)
        except Exception as error:  # a bug must end the run with a record, not leave it "running"
            logger.exception("agent run %s failed unexpectedly", self.execution.id)
            detail = public_error(error)  # the text (SQL, hosts) is in the log line above, not the record
            try:
                self.log.step(self.iteration, "error", self.now(), error=detail)
            except Exception:
                logger.exception("could not record the failure of run %s", self.execution.id)
            return RunOutcome("failed", "internal_error", error=detail)

    async def _loop(self) -> str:
        definition = self.definition
        if definition is None:
            raise _Stop("failed", "unknown_agent", {"message": f"no agent named {self.execution.agent!r}"})
        context = definition.validate_context(self.execution.context or {})
        messages: list[Message] = [
            system(definition.system_prompt(self.runner.rules, self.limits, self.now().date().isoformat())),
            task_message(self.execution.task, self.execution.context or {}),
        ]
        await self._preload(definition, context, messages)
        tools = [t.llm_tool() for t in definition.tools]
        self.vocabulary = prompt_vocabulary(definition, str(messages[0].get("content") or ""))
        invalid_in_a_row = 0
        nudged = False
        while True:
            self._check_limits()
            self.iteration += 1
            result = await self._model_turn(messages, tools)
            if result is None:
                invalid_in_a_row += 1
                if invalid_in_a_row >= MAX_CONSECUTIVE_INVALID:
                    raise _Stop(
                        "failed",
                        "invalid_tool_calls",
                        {"message": f"the model made invalid tool calls {invalid_in_a_row} turns in a row"},
                    )
                continue
            invalid_in_a_row = 0
            if not result.tool_calls:
                answer = (result.content or "").strip()
                # One nudge, then the answer stands (and is checked): a model that ignores tools
                # ends after two turns instead of spending the iteration budget.
                if nudged or (answer and self.attempted_calls > 0):
                    return answer
                nudged = True
                if answer:
                    messages.append({"role": "assistant", "content": answer})
                messages.append(user(NUDGE_TOOLS if answer else NUDGE_ANSWER))
                continue
            if self.tokens > self.limits.token_budget:
                raise _Stop(
                    "stopped",
                    "token_budget",
                    {
                        "message": f"{self.tokens} tokens used of a budget of {self.limits.token_budget}",
                        "skipped_tool_calls": [c.name for c in result.tool_calls],
                    },
                )
            messages.append(
                {
                    "role": "assistant",
                    "content": result.content or "",
                    "tool_calls": [c.openai_format() for c in result.tool_calls],
                }
            )
            self.attempted_calls += len(result.tool_calls)
            for call in result.tool_calls:
                messages.append(await self._tool_turn(definition, call))

    def _check_limits(self) -> None:
        if self.iteration >= self.limits.max_iterations:
            raise _Stop(
                "stopped",
                "max_iterations",
                {"message": f"the agent used its {self.limits.max_iterations} iterations without a final answer"},
            )
        if self.tokens >= self.limits.token_budget:
            raise _Stop(
                "stopped",
                "token_budget",
                {"message": f"{self.tokens} tokens used of a budget of {self.limits.token_budget}"},
            )
        if self.elapsed_s() >= self.limits.time_budget_s:
            raise _Stop(
                "stopped",
                "time_budget",
                {"message": f"the run took longer than its {self.limits.time_budget_s:g} s budget"},
            )

    async def _model_turn(self, messages: list[Message], tools: list[Tool]) -> ToolCallResult | None:
        """One model call, recorded. ``None`` after invalid tool calls (the model is told what was
        wrong); an unavailable LLM ends the run."""
        started = self.runner.monotonic()
        remaining = max(1.0, self.limits.time_budget_s - self.elapsed_s())
        timeout = min(self.runner.llm.config.timeout_s, remaining)
        try:
            result = await self.runner.llm.chat_with_tools(
                messages, tools, timeout_s=timeout, operation=f"agent:{self.execution.agent}"
            )
        except LLMToolCallInvalid as error:
            self.log.step(
                self.iteration,
                "model",
                self.now(),
                error={"code": error.code, "message": error.message, "details": error.details},
                duration_ms=_ms(self.runner.monotonic() - started),
            )
            problems = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in (error.details or []))
            messages.append(
                user(
                    "Your last tool calls were rejected and nothing was run: "
                    f"{problems}. Call only the tools listed, with arguments matching their schemas."
                )
            )
            return None
        except DependencyUnavailable as error:  # the LLM is down, overloaded or refused the request
            self.log.step(
                self.iteration,
                "model",
                self.now(),
                error={"code": error.code, "message": error.message, "details": error.details},
                duration_ms=_ms(self.runner.monotonic() - started),
            )
            raise _Stop("failed", "llm_unavailable", {"message": error.message, "llm_error": error.code}) from error
        self.model = result.model
        self.tokens += result.usage.total_tokens
        self.log.step(
            self.iteration,
            "model",
            self.now(),
            content=result.content,
            tool_calls=[{"id": c.id, "name": c.name, "arguments": c.arguments} for c in result.tool_calls],
            result={"repaired": result.repaired} if result.repaired else None,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            duration_ms=_ms(self.runner.monotonic() - started),
        )
        return result

    async def _preload(self, definition: AgentDefinition, context: BaseModel, messages: list[Message]) -> None:
        loads = definition.preload(context)
        if not loads:
            return
        calls = [ToolCall(id=f"preload_{i}", name=load.tool, arguments=load.arguments) for i, load in enumerate(loads)]
        messages.append({"role": "assistant", "content": "", "tool_calls": [c.openai_format() for c in calls]})
        for call in calls:
            messages.append(await self._tool_turn(definition, call, preload=True))

    def _verify(self, answer: str) -> Verdict:
        """Check the final answer against the tool results, and record the check as a step."""
        evidence = Evidence(
            results=tuple(self.results),
            tool_calls=self.tool_calls,
            user_text=f"{self.execution.task}\n{as_data(self.execution.context or {})}",
            proposals=len(self.proposals),
            today=self.now().date(),
            vocabulary=self.vocabulary,
        )
        with self.runner.runtime.db.organization_scope(self.execution.organization_id) as session:
            names = record_names_in(session, answer)
        verdict = check_answer(answer, evidence, record_names=names)
        detail = verdict.as_dict()
        self.log.step(
            self.iteration,
            "check",
            self.now(),
            content="verified" if verdict.grounded else "unverified",
            result=detail if verdict.grounded else None,
            error=None if verdict.grounded else {"code": verdict.reason, **detail},
        )
        return verdict

    async def _tool_turn(self, definition: AgentDefinition, call: ToolCall, *, preload: bool = False) -> Message:
        """Run one tool call and record it; whatever happens, the model gets a tool message."""
        started = self.runner.monotonic()
        agent_tool = definition.tool(call.name)
        pending_action_id: uuid.UUID | None = None
        try:
            if agent_tool is None:
                raise ToolFailed(
                    f"unknown tool {call.name!r}",
                    code="unknown_tool",
                    details={"known": [t.name for t in definition.tools]},
                )
            arguments = agent_tool.parse(call.arguments)
            value = await agent_tool.execute(self.context, arguments)
            if agent_tool.writes:
                if not isinstance(value, Proposal):
                    raise TypeError(f"write tool {agent_tool.name} must return a Proposal")
                payload, pending_action_id = self._propose(agent_tool, call, value)
            else:
                payload = {"ok": True, "data": value}
            error = None
            if payload.get("ok") is True:
                self.results.append(payload.get("data", payload))
                self.tool_calls += 0 if preload else 1
        except OkyakuError as failure:
            if isinstance(failure, DependencyUnavailable) and failure.code == "dependency_unavailable":
                raise  # the database is down: nothing sensible can follow
            payload, error = error_payload(failure), error_payload(failure)["error"]
        except Exception as failure:  # a tool's bug is reported to the model and logged, not fatal
            logger.exception("tool %s failed", call.name)
            error = {"code": "tool_error", "message": f"the tool failed: {type(failure).__name__}"}
            payload = {"ok": False, "error": error}
        self.log.step(
            self.iteration,
            "tool",
            self.now(),
            tool=call.name,
            tool_call_id=call.id,
            arguments=call.arguments,
            result=payload if error is None else None,
            error=error,
            duration_ms=_ms(self.runner.monotonic() - started),
            pending_action_id=pending_action_id,
        )
        return tool_message(call.id, call.name, payload)

    def _propose(self, agent_tool: AgentTool, call: ToolCall, proposal: Proposal) -> tuple[dict[str, Any], uuid.UUID]:
        key = as_data([agent_tool.name, proposal.entity_type, proposal.entity_id, proposal.changes])
        if key in self.proposals:
            existing = self.proposals[key]
            return {
                "ok": True,
                "status": "pending_approval",
                "pending_action_id": str(existing),
                "note": "this exact change was already proposed in this run",
            }, existing
        if len(self.proposals) >= self.limits.max_proposals:
            raise ToolFailed(
                f"this run already proposed {len(self.proposals)} changes, its limit; stop and summarise",
                code="proposal_limit",
            )
        features = self.runner.llm.features
        auto_apply = agent_tool.low_risk and proposal.operation == "create" and not features.require_approval_for_writes
        action = self.runner.approvals.propose(
            self.execution.organization_id,
            execution_id=self.execution.id,
            agent=self.execution.agent,
            action=agent_tool.name,
            proposal=proposal,
            low_risk=agent_tool.low_risk,
            context={
                "task": self.execution.task,
                "tool_call_id": call.id,
                "arguments": call.arguments,
                **proposal.context,
            },
            auto_apply=auto_apply,
            requested_by=self.execution.requested_by,
        )
        self.proposals[key] = action.id
        return proposal_payload(action), action.id


def prompt_vocabulary(definition: AgentDefinition, system_prompt: str) -> frozenset[str]:
    """The words of the prompt and the tools ("Proposal", "Qualified"): an answer may capitalise
    them without naming anything."""
    return vocabulary_of(system_prompt, as_data([t.describe() for t in definition.tools]))


MIN_RECORD_NAME = 3  # shorter names ("Al", "X") match too much text to mean a record


def record_names_in(session: Session, text: str, limit: int = 50) -> list[str]:
    """The organization's company, deal and contact names that occur in ``text`` as whole words
    (under row-level security: only the caller's organization's records)."""
    if not text.strip():
        return []
    lowered = literal(text.lower())
    full_name = func.concat_ws(" ", Contact.first_name, Contact.last_name)
    names = union_all(
        select(Company.name.label("name")).where(func.strpos(lowered, func.lower(Company.name)) > 0),
        select(Deal.name.label("name")).where(func.strpos(lowered, func.lower(Deal.name)) > 0),
        select(full_name.label("name")).where(
            Contact.first_name.is_not(None),
            Contact.last_name.is_not(None),
            func.strpos(lowered, func.lower(full_name)) > 0,
        ),
    ).subquery()
    found = session.scalars(
        select(names.c.name).where(func.length(names.c.name) >= MIN_RECORD_NAME).distinct().limit(limit)
    )
    lowered_text = text.lower()
    return [n for n in found if re.search(rf"(?<!\w){re.escape(n.lower())}(?!\w)", lowered_text)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)
