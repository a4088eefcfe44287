"""The LLM planner: the question (with the conversation) → one tool call: a query plan, a task,
an email draft, or a refusal. An invalid plan — or one that is not about the question (another
entity, a filter value the user never wrote) — goes back to the model once with the reason; a
second is a clear "cannot". Text without a tool call is never an answer: at most a short question
back that makes no claim (:func:`okyaku.chat.grounding.is_clarifying_question`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from string import Template
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from okyaku.chat.actions import EmailActionArgs, TaskActionArgs
from okyaku.chat.catalogue import PlanInvalid, validate_plan
from okyaku.chat.execute import DataTable
from okyaku.chat.grounding import asks_for_action, is_clarifying_question, plan_problems
from okyaku.chat.plan import QueryPlan
from okyaku.chat.prompts import PHRASING_SYSTEM, PLANNER_SYSTEM, catalogue_text, phrasing_user
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.types import Message, Tool, ToolCall, system, user


class CannotAnswerArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


TOOLS = (
    Tool("query_crm", "Read the CRM: a typed query plan over one entity.", QueryPlan),
    Tool("create_task", "Propose a task (waits for approval).", TaskActionArgs, writes=True),
    Tool("draft_email", "Propose an email draft to a contact (waits for approval).", EmailActionArgs, writes=True),
    Tool("cannot_answer", "Say why this cannot be answered from the CRM.", CannotAnswerArgs),
)


NO_PLAN = (
    "I couldn't turn that into a question about your CRM data. Name what you are after — deals, contacts, "
    "companies, activities or tasks — with a period, a stage or a name."
)
NOT_ANSWERABLE = "That isn't something I can answer from your CRM data."
NO_ACTION_ASKED = "I couldn't work out what to look up for that, and you did not ask me to create anything."


@dataclass
class Decision:
    kind: Literal["plan", "task", "email", "cannot", "clarify"]
    plan: QueryPlan | None = None
    task: TaskActionArgs | None = None
    email: EmailActionArgs | None = None
    message: str = ""
    repaired: bool = False


class LLMPlanner:
    def __init__(self, llm: LLMGateway, *, row_limit: int) -> None:
        self.llm = llm
        self.row_limit = row_limit
        self._catalogue = catalogue_text()

    def messages(
        self, question: str, history: Sequence[Message], *, today: date, timezone: str, focus: str
    ) -> list[Message]:
        prompt = Template(PLANNER_SYSTEM).substitute(
            today=f"{today.isoformat()} ({today.strftime('%A')})",
            timezone=timezone,
            catalogue=self._catalogue,
            focus=f"\nThe user is looking at {focus}." if focus else "",
        )
        return [system(prompt), *history, user(question)]

    def decide(
        self,
        question: str,
        history: Sequence[Message],
        *,
        today: date,
        timezone: str,
        focus: str = "",
        budget: TurnBudget | None = None,
    ) -> Decision:
        budget = budget or TurnBudget.unbounded()
        conversation = self.messages(question, history, today=today, timezone=timezone, focus=focus)
        context = "\n".join(str(m.get("content") or "") for m in history)
        error: PlanInvalid | None = None
        for round_ in range(2):
            if round_ and not budget.fits_a_call():
                break  # no time for the repair: say so rather than overrun the function
            result = self.llm.sync.chat_with_tools(
                conversation,
                TOOLS,
                operation="chat_plan",
                timeout_s=budget.call_timeout_s(),
                deadline=budget.deadline,  # the repair round inside the gateway stops there too
            )
            if not result.tool_calls:
                text = (result.content or "").strip()
                if is_clarifying_question(text, question):
                    return Decision("clarify", message=text)
                return Decision("cannot", message=NO_PLAN)  # model text is never an answer
            call = result.tool_calls[0]
            decision, error = self._decision(call, question, context)
            if decision is not None:
                decision.repaired = round_ > 0 or result.repaired
                return decision
            assert error is not None
            conversation = [
                *conversation,
                {"role": "assistant", "content": result.content, "tool_calls": [call.openai_format()]},
                {
                    "role": "tool",
                    "tool_call_id": call.id,
                    "content": f"error: {error.message}. Call query_crm again with a corrected plan.",
                },
            ]
        message = error.message if error else "the plan was not valid"
        return Decision("cannot", message=f"I couldn't turn that into a query I can run: {message}")

    def _decision(self, call: ToolCall, question: str, context: str) -> tuple[Decision | None, PlanInvalid | None]:
        if call.name == "cannot_answer":
            return Decision("cannot", message=NOT_ANSWERABLE), None  # the model's reason is not shown
        if call.name in ("create_task", "draft_email") and not asks_for_action(question):
            return Decision("cannot", message=NO_ACTION_ASKED), None
        if call.name == "create_task":
            assert isinstance(call.parsed, TaskActionArgs)
            return Decision("task", task=call.parsed), None
        if call.name == "draft_email":
            assert isinstance(call.parsed, EmailActionArgs)
            return Decision("email", email=call.parsed), None
        assert isinstance(call.parsed, QueryPlan)
        try:
            plan = validate_plan(call.parsed, row_limit=self.row_limit)
        except PlanInvalid as invalid:
            return None, invalid
        problems = plan_problems(plan, question, context)
        if problems:
            return None, PlanInvalid("; ".join(problems))
        return Decision("plan", plan=plan), None

    # --- phrasing -------------------------------------------------------------------------------

    @staticmethod
    def phrasing_messages(question: str, data: DataTable) -> list[Message]:
        payload = json.dumps(data.as_dict(), default=str, ensure_ascii=False)
        return [system(PHRASING_SYSTEM), user(phrasing_user(question, payload))]

    def phrase(
        self, question: str, data: DataTable, *, timeout_s: float | None = None, deadline: float | None = None
    ) -> str:
        messages = self.phrasing_messages(question, data)
        result = self.llm.sync.chat(messages, operation="chat_phrase", timeout_s=timeout_s, deadline=deadline)
        return result.content.strip()

    def stream_phrase(self, question: str, data: DataTable, *, timeout_s: float | None = None) -> Iterator[str]:
        return self.llm.sync.stream_chat(self.phrasing_messages(question, data), timeout_s=timeout_s)


@dataclass(frozen=True)
class TurnBudget:
    """The time a chat turn has for its model calls: each call gets what is left (at most the
    configured per-call timeout), and a call that could not finish in time is not started."""

    deadline: float | None  # a time.monotonic() value; None: unbounded (the gateway's timeout only)
    per_call_s: float | None = None
    min_call_s: float = 3.0

    @classmethod
    def unbounded(cls) -> TurnBudget:
        return cls(None)

    def left_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def fits_a_call(self) -> bool:
        left = self.left_s()
        return left is None or left >= self.min_call_s

    def call_timeout_s(self) -> float | None:
        left = self.left_s()
        if left is None:
            return self.per_call_s
        return max(0.1, min(left, self.per_call_s) if self.per_call_s else left)
