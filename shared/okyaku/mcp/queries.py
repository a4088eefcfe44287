"""``query_crm``: the chat service's question path (LLM planner, or its deterministic parser when
the model is down) and its typed query plans, read-only and unstored.

A question that asks for an action ("create a task ...") is refused here rather than proposed:
this tool promises to change nothing; propose_change and draft_email are the ways to ask."""

from __future__ import annotations

from okyaku.chat.catalogue import validate_plan
from okyaku.chat.plan import QueryPlan
from okyaku.chat.planner import Decision
from okyaku.chat.schemas import ChatRequest
from okyaku.chat.service import ChatService, Turn, _State
from okyaku.tenancy import Principal

READ_ONLY_REFUSAL = (
    "query_crm only reads the CRM, so it did not do that. To ask for a change, call propose_change "
    "(records, tasks, notes) or draft_email; a person approves it in the approval queue."
)


class ReadOnlyChat(ChatService):
    """The chat service without its action path and without storing the turn as a conversation."""

    def _action(self, state: _State, decision: Decision, notes: list[str]) -> Turn:
        return Turn(READ_ONLY_REFUSAL, notes=notes, mode="refusal")

    def answer(self, principal: Principal, question: str) -> Turn:
        state = self._prepare(principal, ChatRequest(message=question))
        turn: Turn | None = None
        for kind, value in self._turn(state, streaming=False):
            if kind == "turn":
                turn = value
        assert turn is not None
        return turn

    def run_plan(self, principal: Principal, plan: QueryPlan) -> Turn:
        state = self._prepare(principal, ChatRequest(message="(a query plan)"))
        checked = validate_plan(plan, row_limit=self.row_limit)  # PlanInvalid (422) names the problem
        return self._execute(state, checked, mode="plan")
