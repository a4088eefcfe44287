"""The LLM planner: the question (with the conversation) → one tool call: a query plan, a task,
an email draft, or a refusal. An invalid plan goes back to the model once with the catalogue's
error; a second invalid plan is a clear "cannot"."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from string import Template
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from okyaku.chat.actions import EmailActionArgs, TaskActionArgs
from okyaku.chat.catalogue import PlanInvalid, validate_plan
from okyaku.chat.execute import DataTable
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


@dataclass
class Decision:
    kind: Literal["plan", "task", "email", "cannot"]
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
        self, question: str, history: Sequence[Message], *, today: date, timezone: str, focus: str = ""
    ) -> Decision:
        conversation = self.messages(question, history, today=today, timezone=timezone, focus=focus)
        error: PlanInvalid | None = None
        for round_ in range(2):
            result = self.llm.sync.chat_with_tools(conversation, TOOLS, operation="chat_plan")
            if not result.tool_calls:
                text = (result.content or "").strip()
                if text and not any(ch.isdigit() for ch in text):
                    return Decision("cannot", message=text)  # a clarifying question, with no numbers to check
                return Decision("cannot", message="I can't answer that from the CRM data.")
            call = result.tool_calls[0]
            decision, error = self._decision(call)
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

    def _decision(self, call: ToolCall) -> tuple[Decision | None, PlanInvalid | None]:
        if call.name == "cannot_answer":
            assert isinstance(call.parsed, CannotAnswerArgs)
            return Decision("cannot", message=call.parsed.reason), None
        if call.name == "create_task":
            assert isinstance(call.parsed, TaskActionArgs)
            return Decision("task", task=call.parsed), None
        if call.name == "draft_email":
            assert isinstance(call.parsed, EmailActionArgs)
            return Decision("email", email=call.parsed), None
        assert isinstance(call.parsed, QueryPlan)
        try:
            return Decision("plan", plan=validate_plan(call.parsed, row_limit=self.row_limit)), None
        except PlanInvalid as invalid:
            return None, invalid

    # --- phrasing -------------------------------------------------------------------------------

    @staticmethod
    def phrasing_messages(question: str, data: DataTable) -> list[Message]:
        payload = json.dumps(data.as_dict(), default=str, ensure_ascii=False)
        return [system(PHRASING_SYSTEM), user(phrasing_user(question, payload))]

    def phrase(self, question: str, data: DataTable) -> str:
        return self.llm.sync.chat(self.phrasing_messages(question, data), operation="chat_phrase").content.strip()

    def stream_phrase(self, question: str, data: DataTable) -> Iterator[str]:
        return self.llm.sync.stream_chat(self.phrasing_messages(question, data))
