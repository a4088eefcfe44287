"""The chat service: a question → a plan → rows read under the caller's organization → an answer
stated from them, with citations; actions become pending actions. Every turn is stored with its plan
and data.

The deterministic parser answers first (milliseconds, and right when it answers at all); only what
it cannot place goes to the LLM planner, and only when the question is about the CRM at all. What the
model writes reaches the user only after :mod:`okyaku.chat.grounding` checked it against the
question and the rows; otherwise the answer is built from the data, and the notes say why."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from okyaku.chat import store
from okyaku.chat.actions import ActionOutcome, ChatActions, TaskActionArgs
from okyaku.chat.answer import templated_answer
from okyaku.chat.catalogue import CATALOGUE, PlanInvalid, validate_plan
from okyaku.chat.compile import compile_plan
from okyaku.chat.dates import local_today
from okyaku.chat.execute import CitationOut, DataTable, PlanResult, execute_compiled, read_only
from okyaku.chat.fallback import CANNOT, Parsed, parse_question
from okyaku.chat.grounding import describe_plan, name_terms, on_topic_words, phrasing_problems
from okyaku.chat.lexicon import Lexicon, load_lexicon
from okyaku.chat.models import ChatMessage
from okyaku.chat.parser import reserved_words
from okyaku.chat.plan import Filter, QueryPlan
from okyaku.chat.planner import Decision, LLMPlanner, TurnBudget
from okyaku.chat.resolve import Candidate, find_records, names_any_record, record_label, resolve_lookup
from okyaku.chat.safety import refusal
from okyaku.chat.schemas import ChatAction, ChatRequest, ChatResponse
from okyaku.clock import work_deadline
from okyaku.errors import NotFound, OkyakuError
from okyaku.features import require_feature
from okyaku.llm.errors import LLMOutputInvalid, LLMToolCallInvalid
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.types import Message, assistant, user
from okyaku.runtime import Runtime
from okyaku.tenancy import Principal

if TYPE_CHECKING:
    from okyaku.agents.approvals import ApprovalService
    from okyaku.embeddings.search import SemanticSearch

logger = logging.getLogger(__name__)

LLM_DOWN_NOTE = "The language model is unavailable; only questions the built-in parser understands are answered."
TURN_MARGIN_S = 2.0  # kept back from the invocation's end for storing the turn and answering
OFF_TOPIC = (
    "I answer questions about your CRM: companies, contacts, deals, activities and tasks. "
    "That question is not about them."
)
_CONTEXT_ENTITIES = {
    "company": "companies",
    "contact": "contacts",
    "deal": "deals",
    "activity": "activities",
    "task": "tasks",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Turn:
    answer: str
    plan: QueryPlan | None = None
    data: DataTable = field(default_factory=lambda: DataTable([], []))
    citations: list[CitationOut] = field(default_factory=list)
    actions: list[ChatAction] = field(default_factory=list)
    degraded: bool = False
    notes: list[str] = field(default_factory=list)
    mode: str = "llm"  # who planned: parser | llm | refusal
    phrased_by: str = "template"  # who wrote the answer's text: template | llm


@dataclass
class _State:
    principal: Principal
    request: ChatRequest
    conversation_id: uuid.UUID
    is_new: bool
    previous_plan: QueryPlan | None
    history: list[Message]
    focus: Candidate | None
    today: date
    budget: TurnBudget
    lexicon: Lexicon | None = None


class ChatService:
    def __init__(
        self,
        runtime: Runtime,
        llm: LLMGateway | None,
        *,
        clock: Callable[[], datetime] = utc_now,
        approvals: ApprovalService | None = None,
        search: SemanticSearch | None = None,
    ) -> None:
        self.runtime = runtime
        self.llm = llm
        self.clock = clock
        settings = runtime.settings
        self.zone_name = settings.ai_chat_timezone
        self.zone = ZoneInfo(self.zone_name)
        self.row_limit = settings.ai_chat_row_limit
        self.timeout_ms = settings.ai_chat_statement_timeout_ms
        self.planner = LLMPlanner(llm, row_limit=self.row_limit) if llm is not None else None
        self.actions = ChatActions(runtime, approvals, clock, search=search)

    # --- asking ---------------------------------------------------------------------------------

    def ask(self, principal: Principal, request: ChatRequest) -> ChatResponse:
        state = self._prepare(principal, request)
        turn: Turn | None = None
        for kind, value in self._turn(state, streaming=False):
            if kind == "turn":
                turn = value
        assert turn is not None
        return self._store(state, turn)

    def ask_stream(self, principal: Principal, request: ChatRequest) -> Iterator[tuple[str, Any]]:
        """("delta", text) events while the answer is written, then ("final", ChatResponse)."""
        state = self._prepare(principal, request)
        for kind, value in self._turn(state, streaming=True):
            if kind == "delta":
                yield "delta", value
            else:
                yield "final", self._store(state, value)

    def _prepare(self, principal: Principal, request: ChatRequest) -> _State:
        require_feature(self.runtime.settings, "chat")
        today = local_today(self.clock(), self.zone)
        previous: QueryPlan | None = None
        history: list[Message] = []
        focus: Candidate | None = None
        with read_only(
            self.runtime.db, principal.organization_id, timeout_ms=self.timeout_ms, zone=self.zone_name
        ) as session:
            if request.conversation_id is not None:
                store.get_conversation(session, request.conversation_id)
                recent = store.messages_of(
                    session, request.conversation_id, last=2 * self.runtime.settings.ai_chat_history_turns
                )
                history = _history(recent)
                previous = next((QueryPlan.model_validate(m.plan) for m in reversed(recent) if m.plan), None)
            if request.context is not None:
                focus = _focus(session, request.context.entity_type, request.context.entity_id)
            lexicon = load_lexicon(session, request.message, reserved=reserved_words())
        return _State(
            principal,
            request,
            request.conversation_id or uuid.uuid4(),
            request.conversation_id is None,
            previous,
            history,
            focus,
            today,
            self._budget(),
            lexicon,
        )

    def _budget(self) -> TurnBudget:
        """This turn's time for model calls: the setting, and on Lambda what the invocation has left."""
        settings = self.runtime.settings
        deadline = work_deadline(margin_s=TURN_MARGIN_S, default_budget_s=settings.ai_chat_turn_budget_s)
        deadline = min(deadline, time.monotonic() + settings.ai_chat_turn_budget_s)
        per_call = self.llm.config.timeout_s if self.llm is not None else None
        return TurnBudget(deadline, per_call)

    def _turn(self, state: _State, *, streaming: bool) -> Iterator[tuple[str, Any]]:
        question = state.request.message
        refused = refusal(question)
        if refused is not None:
            yield from _emit(Turn(refused, mode="refusal"), streaming)
            return
        parsed = self._parse(state)
        if parsed.outcome != "cannot" or parsed.message != CANNOT:  # understood, or a specific answer
            yield from _emit(self._parsed(state, parsed), streaming)
            return
        if state.previous_plan is None and not self._on_topic(state):
            yield from _emit(Turn(OFF_TOPIC, mode="refusal"), streaming)  # no model call for it
            return
        decision: Decision | None = None
        if self.planner is not None:
            try:
                decision = self.planner.decide(
                    question,
                    state.history,
                    today=state.today,
                    timezone=self.zone_name,
                    focus=_focus_text(state.focus),
                    budget=state.budget,
                )
            except (LLMOutputInvalid, LLMToolCallInvalid) as error:
                yield from _emit(
                    Turn(f"I couldn't work out a query for that ({error.message}).", mode="llm"), streaming
                )
                return
            except OkyakuError as error:  # unreachable, open circuit, model missing: answer without it
                if error.status_code != 503:
                    raise
                logger.warning("chat planner unavailable: %s", error.message)
        if decision is None:
            yield from _emit(Turn(CANNOT, mode="parser", degraded=True, notes=[LLM_DOWN_NOTE]), streaming)
            return
        yield from self._planned(state, decision, streaming)

    def _on_topic(self, state: _State) -> bool:
        """The question uses the CRM's words, or names a record of the organization."""
        if state.focus is not None or on_topic_words(state.request.message):
            return True
        terms = [t for t in (re.sub(r"[^a-z0-9]", "", w) for w in name_terms(state.request.message)) if len(t) >= 3]
        if not terms:
            return False
        with read_only(
            self.runtime.db, state.principal.organization_id, timeout_ms=self.timeout_ms, zone=self.zone_name
        ) as session:
            return names_any_record(session, terms)

    # --- the LLM path ---------------------------------------------------------------------------

    def _planned(self, state: _State, decision: Decision, streaming: bool) -> Iterator[tuple[str, Any]]:
        notes = ["The model's first plan was invalid; it was repaired once."] if decision.repaired else []
        if decision.kind == "clarify":
            notes.append("The language model asks this back; it has not read any data.")
            yield from _emit(Turn(decision.message, notes=notes), streaming)
            return
        if decision.kind == "cannot" or (decision.kind == "plan" and decision.plan is None):
            yield from _emit(Turn(decision.message or CANNOT, notes=notes), streaming)
            return
        if decision.kind in ("task", "email"):
            yield from _emit(self._action(state, decision, notes), streaming)
            return
        assert decision.plan is not None
        turn = self._execute(state, decision.plan, notes=notes, mode="llm")
        if turn.plan is None:  # the plan could not run (e.g. semantic search is off)
            yield from _emit(turn, streaming)
            return
        turn.notes.append(f"Read by the language model as: {describe_plan(turn.plan)}.")
        if turn.data.rows:
            self._phrase(state, turn, streaming)
        yield from _emit(turn, streaming)

    def _phrase(self, state: _State, turn: Turn, streaming: bool) -> None:
        """Let the model word the answer; keep its text only when the data backs all of it. The
        text is checked whole before anything is sent, so a stream never shows unchecked words."""
        assert self.planner is not None and turn.plan is not None
        question = state.request.message
        if not state.budget.fits_a_call():
            turn.notes.append("No time was left to have the model word the answer; this text is built from the data.")
            return
        timeout_s = state.budget.call_timeout_s()
        try:
            if streaming:
                text = "".join(self.planner.stream_phrase(question, turn.data, timeout_s=timeout_s))
            else:
                text = self.planner.phrase(question, turn.data, timeout_s=timeout_s, deadline=state.budget.deadline)
        except OkyakuError as error:
            if error.status_code != 503:
                raise
            turn.degraded = True
            turn.notes.append("The language model could not word the answer; this text is built from the data.")
            return
        text = text.strip()
        problems = phrasing_problems(text, turn.plan, turn.data, question) if text else ["it was empty"]
        if problems:
            turn.notes.append(
                "The model's wording was not used (" + "; ".join(problems) + "); this text is built from the data."
            )
            return
        turn.answer = text
        turn.phrased_by = "llm"

    def _action(self, state: _State, decision: Decision, notes: list[str]) -> Turn:
        organization_id, user_id = state.principal.organization_id, state.principal.user_id
        try:
            if decision.kind == "task":
                assert decision.task is not None
                outcome = self.actions.create_task(
                    organization_id,
                    user_id,
                    state.request.message,
                    decision.task,
                    today=state.today,
                    conversation_id=state.conversation_id,
                )
            else:
                assert decision.email is not None
                outcome = self.actions.draft_email(
                    organization_id,
                    user_id,
                    state.request.message,
                    decision.email,
                    conversation_id=state.conversation_id,
                )
        except OkyakuError as error:
            if error.status_code >= 500:
                raise
            return Turn(f"I couldn't propose that: {error.message}", notes=notes)
        return _action_turn(outcome, notes)

    # --- the parser path ------------------------------------------------------------------------

    def _parse(self, state: _State) -> Parsed:
        context_company = state.focus is not None and state.focus.entity_type == "company"
        return parse_question(
            state.request.message,
            today=state.today,
            previous=state.previous_plan,
            context_company=context_company,
            lexicon=state.lexicon,
            me=state.principal.user_id,
        )

    def _parsed(self, state: _State, parsed: Parsed) -> Turn:
        if parsed.outcome == "cannot" or (parsed.outcome == "plan" and parsed.plan is None):
            return Turn(parsed.message, mode="parser")
        if parsed.outcome == "task":
            assert parsed.task is not None
            args = TaskActionArgs(title=parsed.task.title, due=parsed.task.due, contact_name=parsed.task.person)
            turn = self._action(state, Decision("task", task=args), [])
            turn.mode = "parser"
            return turn
        assert parsed.plan is not None
        try:
            plan = validate_plan(parsed.plan, row_limit=self.row_limit)
        except PlanInvalid:
            return Turn(CANNOT, mode="parser")
        return self._execute(state, plan, parsed=parsed, mode="parser")

    # --- running a plan -------------------------------------------------------------------------

    def _execute(
        self, state: _State, plan: QueryPlan, *, parsed: Parsed | None = None, notes: list[str] | None = None, mode: str
    ) -> Turn:
        notes = list(notes or [])
        organization_id = state.principal.organization_id
        matched: list[Candidate] = []
        restrict: list[uuid.UUID] | None = None
        with read_only(self.runtime.db, organization_id, timeout_ms=self.timeout_ms, zone=self.zone_name) as session:
            for lookup in parsed.lookups if parsed else []:
                if lookup.value == "@context" and state.focus is not None:
                    plan = plan.model_copy(
                        update={
                            "filters": [*plan.filters, Filter(field="account_id", op="eq", value=state.focus.entity_id)]
                        }
                    )
                    matched.append(state.focus)
                    continue
                outcome = resolve_lookup(session, plan, lookup)
                if outcome.clarify or outcome.missing:
                    return Turn(outcome.clarify or outcome.missing or CANNOT, mode=mode, notes=notes)
                plan = plan.model_copy(update={"filters": [*plan.filters, *outcome.filters]})
                matched += outcome.matched
                if outcome.note:
                    notes.append(outcome.note)
            if plan.search is not None:
                if not self.runtime.settings.ai_rag_enabled:
                    return Turn(
                        "That question needs semantic search, which is switched off (AI_RAG_ENABLED=false).",
                        mode=mode,
                        notes=notes,
                    )
                restrict = self._search(session, organization_id, plan)
            plan = validate_plan(plan, row_limit=self.row_limit)
            compiled = compile_plan(
                plan, today=state.today, zone=self.zone, row_limit=self.row_limit, restrict_ids=restrict
            )
            result: PlanResult = execute_compiled(session, compiled)
        if result.truncated:
            notes.append(f"Showing {len(result.data.rows)} of {result.data.total} matching rows.")
        citations = [CitationOut(c.entity_type, c.entity_id, c.label) for c in matched]
        citations += [
            c
            for c in result.citations
            if (c.entity_type, c.entity_id) not in {(m.entity_type, m.entity_id) for m in matched}
        ]
        subject = parsed.subject if parsed else ""
        if parsed and parsed.family == "activities_with" and matched:
            subject = f"{parsed.subject} with {matched[0].label}"
        answer = templated_answer(plan, result.data, family=parsed.family if parsed else "", subject=subject)
        return Turn(answer, plan, result.data, citations, notes=notes, mode=mode)

    def _search(self, session: Any, organization_id: uuid.UUID, plan: QueryPlan) -> list[uuid.UUID]:
        assert plan.search is not None
        entity_type = CATALOGUE[plan.entity].entity_type
        search = self.actions.services.semantic_search()
        found = search.search(
            session, organization_id, plan.search.query, entity_types=[entity_type], limit=plan.search.limit
        )
        return [hit.entity_id for hit in found.hits if hit.entity_type == entity_type]

    # --- storing --------------------------------------------------------------------------------

    def _store(self, state: _State, turn: Turn) -> ChatResponse:
        plan_json = turn.plan.model_dump(mode="json", exclude_none=True) if turn.plan else None
        data_json = turn.data.as_dict()
        citations = [c.as_dict() for c in turn.citations]
        actions = [a.model_dump(mode="json") for a in turn.actions]
        with self.runtime.db.organization_scope(state.principal.organization_id) as session:
            if state.is_new:
                from okyaku.chat.models import ChatConversation

                conversation = ChatConversation(
                    id=state.conversation_id, title=state.request.message[:200], user_id=state.principal.user_id
                )
                session.add(conversation)
                session.flush()
            else:
                conversation = store.get_conversation(session, state.conversation_id, for_update=True)
            store.append_message(session, conversation, "user", state.request.message)
            message = store.append_message(
                session,
                conversation,
                "assistant",
                turn.answer,
                plan=plan_json,
                data=data_json,
                citations=citations,
                actions=actions,
                notes=turn.notes,
                degraded=turn.degraded,
                mode=turn.mode,
            )
            message_id = message.id
        return ChatResponse(
            conversation_id=state.conversation_id,
            message_id=message_id,
            answer=turn.answer,
            data=data_json,
            citations=citations,
            plan=plan_json,
            actions=turn.actions,
            degraded=turn.degraded,
            notes=turn.notes,
            planner=turn.mode if turn.mode in ("parser", "llm") and (turn.plan or turn.actions) else None,
            phrased_by=turn.phrased_by,
        )


def _emit(turn: Turn, streaming: bool) -> Iterator[tuple[str, Any]]:
    if streaming and turn.answer:
        for word in turn.answer.split(" "):
            yield "delta", word + " "
    yield "turn", turn


def _action_turn(outcome: ActionOutcome, notes: list[str]) -> Turn:
    citations = [CitationOut(c.entity_type, c.entity_id, c.label) for c in outcome.citations or []]
    return Turn(outcome.answer, actions=[outcome.action] if outcome.action else [], citations=citations, notes=notes)


def _history(messages: list[ChatMessage]) -> list[Message]:
    """The conversation for the planner: questions, and for answers only their plan or action —
    never record text, so nothing a record says reaches the turn that may call tools."""
    out: list[Message] = []
    for message in messages:
        if message.role == "user":
            out.append(user(message.content))
        elif message.plan:
            out.append(assistant("Answered with query_crm plan: " + json.dumps(message.plan)))
        elif message.actions:
            out.append(assistant("Proposed: " + "; ".join(str(a.get("summary", "")) for a in message.actions)))
        else:
            out.append(assistant("(answered without a query)"))
    return out


def _focus(session: Any, entity_type: str, entity_id: uuid.UUID) -> Candidate:
    label = record_label(session, _CONTEXT_ENTITIES[entity_type], entity_id)
    if label is None:
        raise NotFound(
            f"{entity_type} {entity_id} not found", details={"field": "context.entity_id", "id": str(entity_id)}
        )
    return Candidate(entity_type, str(entity_id), label)


def _focus_text(focus: Candidate | None) -> str:
    return f'{focus.entity_type} "{focus.label}" (id {focus.entity_id})' if focus else ""


__all__ = ["ChatService", "find_records"]
