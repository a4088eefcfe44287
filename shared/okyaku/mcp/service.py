"""What the MCP tools do, through the services the HTTP API already uses. Blocking code: the
server runs each call on a worker thread.

Every read runs under the caller's organization (row-level security), so another organization's
id is simply not found. Every write is a proposal in the approval queue (agent ``mcp``, the
client's name in its context), never a direct change. Record text comes back as data: no tool
decides what to do from what a record says."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import select, text

from okyaku.errors import NotFound, OkyakuError, ValidationFailed, field_error
from okyaku.features import require_feature
from okyaku.mcp.settings import McpSettings
from okyaku.mcp.tools import (
    APPROVAL_NOTE,
    DATA_NOT_INSTRUCTIONS,
    RECORD_TYPES,
    TOOLS_BY_NAME,
    AnalyzeTextArgs,
    DealForecastArgs,
    DraftEmailArgs,
    GetRecordArgs,
    LeadScoreArgs,
    ListApprovalsArgs,
    ListRecommendationsArgs,
    ProposeChangeArgs,
    QueryCrmArgs,
    SearchRecordsArgs,
    ToolArguments,
)
from okyaku.runtime import Runtime
from okyaku.tenancy import Principal
from okyaku.validation import field_details

if TYPE_CHECKING:
    from okyaku.agents.approvals import ApprovalService
    from okyaku.agents.models import PendingAction
    from okyaku.agents.tooling import AgentTool, ToolContext
    from okyaku.agents.tools.services import ToolServices
    from okyaku.conversation.service import ConversationService
    from okyaku.embeddings.search import SemanticSearch
    from okyaku.llm.gateway import LLMGateway
    from okyaku.mcp.queries import ReadOnlyChat

logger = logging.getLogger(__name__)

MCP_AGENT = "mcp"
REVIEW_PAGE = "/console/approvals"
# The stored targets' names (okyaku.predictions.targets.PREDICTION_OF), without importing predictions.
_SCORE_TARGETS = {"contact": ("lead_score", "churn_risk"), "deal": ("deal_forecast",)}
_STORED_TARGET = {"lead": "lead_score", "deal": "deal_forecast"}


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Caller:
    """Who calls: the API key's organization and user, and the MCP client they use."""

    principal: Principal
    client: str  # clientInfo's name/version when the client sent it, else its User-Agent


class UnknownTool(OkyakuError):
    status_code = 404
    code = "unknown_tool"


class McpTools:
    """The tools' implementations; one per process (services are built on first use)."""

    def __init__(
        self,
        runtime: Runtime,
        llm: LLMGateway | None,
        *,
        settings: McpSettings | None = None,
        search: SemanticSearch | None = None,
        clock: Callable[[], datetime] = utc_now,
        compute_predictions: bool | None = None,
    ) -> None:
        self.runtime = runtime
        # None: score on demand where the ML extra is installed, else read the stored scores.
        self.compute_predictions = _ml_installed() if compute_predictions is None else compute_predictions
        self.llm = llm
        self.settings = settings or McpSettings()
        self.clock = clock
        self._search = search
        self._lock = threading.RLock()  # a service may build another it needs (chat: approvals)
        self._built: dict[str, Any] = {}

    # --- services, built once on first use (the function imports fast; a tool pays its own imports)

    def _service(self, name: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    @property
    def tool_services(self) -> ToolServices:
        def build() -> ToolServices:
            from okyaku.agents.tools.services import ToolServices

            return ToolServices(self.runtime, search=self._search)

        return cast("ToolServices", self._service("tool_services", build))

    @property
    def approvals(self) -> ApprovalService:
        def build() -> ApprovalService:
            from okyaku.agents.approvals import ApprovalService

            return ApprovalService(self.runtime, clock=self.clock)

        return cast("ApprovalService", self._service("approvals", build))

    @property
    def chat(self) -> ReadOnlyChat:
        def build() -> ReadOnlyChat:
            from okyaku.mcp.queries import ReadOnlyChat

            services = self.tool_services
            search = services.semantic_search() if services.search_enabled else None
            return ReadOnlyChat(self.runtime, self.llm, clock=self.clock, approvals=self.approvals, search=search)

        return cast("ReadOnlyChat", self._service("chat", build))

    @property
    def conversation(self) -> ConversationService:
        def build() -> ConversationService:
            from okyaku.conversation.service import ConversationService
            from okyaku.llm.gateway import LLMGateway

            return ConversationService(self.runtime, self.llm or LLMGateway.from_settings(self.runtime.settings))

        return cast("ConversationService", self._service("conversation", build))

    # --- dispatch --------------------------------------------------------------------------------

    def parse(self, name: str, raw: Mapping[str, Any] | None) -> ToolArguments:
        spec = TOOLS_BY_NAME.get(name)
        if spec is None:
            raise UnknownTool(f"no tool {name!r}", details={"tools": sorted(TOOLS_BY_NAME)})
        try:
            return spec.arguments.model_validate(dict(raw or {}))
        except ValidationError as error:
            raise ValidationFailed(
                f"invalid arguments for {name}", details=field_details(error, whole="(arguments)")
            ) from error

    def call(self, caller: Caller, name: str, raw: Mapping[str, Any] | None) -> dict[str, Any]:
        """Run one tool; an :class:`OkyakuError` says why it could not."""
        args = self.parse(name, raw)
        implementation: Callable[[Caller, Any], dict[str, Any]] = getattr(self, f"tool_{name}")
        return cap_result(implementation(caller, args), self.settings.max_result_chars)

    # --- reading ---------------------------------------------------------------------------------

    def tool_search_records(self, caller: Caller, args: SearchRecordsArgs) -> dict[str, Any]:
        require_feature(self.runtime.settings, "rag")
        from okyaku.embeddings.models import EMBEDDABLE_TYPES

        organization_id = caller.principal.organization_id
        search = self.tool_services.semantic_search()
        with self._read(organization_id) as session:
            found = search.search(
                session,
                organization_id,
                args.query.strip(),
                entity_types=args.types or EMBEDDABLE_TYPES,
                limit=args.limit,
            )
        return {
            "results": [
                {
                    "type": hit.entity_type,
                    "id": str(hit.entity_id),
                    "name": hit.title,
                    "snippet": hit.snippet,
                    "score": hit.score,
                    "uri": record_uri(hit.entity_type, hit.entity_id),
                }
                for hit in found.hits
            ],
            "degraded": found.degraded,
            "notes": [*found.notes, DATA_NOT_INSTRUCTIONS],
        }

    def tool_get_record(self, caller: Caller, args: GetRecordArgs) -> dict[str, Any]:
        from okyaku.agents.tools.read import GetRecordArgs as AgentGetRecordArgs
        from okyaku.agents.tools.read import get_record

        ctx = self._tool_context(caller, f"get_record {args.type} {args.id}")
        found: dict[str, Any] = _run(get_record, ctx, AgentGetRecordArgs(entity_type=args.type, id=args.id))
        found["scores"] = self._stored_scores(caller.principal.organization_id, args.type, args.id)
        found["uri"] = record_uri(args.type, args.id)
        found["note"] = DATA_NOT_INSTRUCTIONS
        return found

    def _stored_scores(
        self, organization_id: uuid.UUID, entity_type: str, entity_id: uuid.UUID
    ) -> list[dict[str, Any]]:
        """The latest stored lead score / churn risk / deal forecast, if the scoring function made one
        (reading them needs no model: the factors come with get_lead_score / get_deal_forecast)."""
        targets = _SCORE_TARGETS.get(entity_type)
        if not targets:
            return []
        statement = text(
            "SELECT target, score, model_version, scored_at FROM current_predictions "
            "WHERE entity_id = :id AND target = ANY(:targets) ORDER BY target"
        )
        with self._read(organization_id) as session:
            rows = session.execute(statement, {"id": entity_id, "targets": list(targets)}).all()
        return [
            {
                "target": r.target,
                "score": r.score,
                "model_version": r.model_version,
                "scored_at": r.scored_at.isoformat(),
            }
            for r in rows
        ]

    def tool_query_crm(self, caller: Caller, args: QueryCrmArgs) -> dict[str, Any]:
        chat = self.chat
        if args.plan is not None:
            turn = chat.run_plan(caller.principal, args.plan)
        else:
            assert args.question is not None
            turn = chat.answer(caller.principal, args.question)
        return {
            "answer": turn.answer,
            "table": turn.data.as_dict(),
            "citations": [{**c.as_dict(), "uri": record_uri(c.entity_type, c.entity_id)} for c in turn.citations],
            "plan": turn.plan.model_dump(mode="json", exclude_none=True) if turn.plan else None,
            "mode": turn.mode,  # who planned: parser, llm, plan (given), refusal
            "phrased_by": turn.phrased_by,  # who wrote the answer's words: template or llm (checked)
            "degraded": turn.degraded,
            "notes": turn.notes,
        }

    def tool_list_recommendations(self, caller: Caller, args: ListRecommendationsArgs) -> dict[str, Any]:
        require_feature(self.runtime.settings, "recommendations")
        from okyaku.recommendations.service import RecommendationService

        service = cast(
            "RecommendationService",
            self._service("recommendations", lambda: RecommendationService(self.runtime, approvals=self.approvals)),
        )
        principal = caller.principal
        found = service.for_entity(principal.organization_id, args.type, args.id, principal.user_id)
        keep = ("id", "entity_type", "entity_id", "type", "title", "action", "facts", "priority", "confidence")
        cards = [
            {k: card.get(k) for k in keep} | {"expected_value": card.get("expected_value")} for card in found["data"]
        ]
        return {"entity_type": args.type, "entity_id": str(args.id), "recommendations": cards}

    def tool_get_lead_score(self, caller: Caller, args: LeadScoreArgs) -> dict[str, Any]:
        return self._prediction(caller, "lead", args.contact_id)

    def tool_get_deal_forecast(self, caller: Caller, args: DealForecastArgs) -> dict[str, Any]:
        return self._prediction(caller, "deal", args.deal_id)

    def _prediction(self, caller: Caller, target: str, entity_id: uuid.UUID) -> dict[str, Any]:
        """Scored now where the models can run (numpy and scikit-learn installed: the local runner,
        OpenFaaS), as the scoring API does; else the score the scoring or forecasting function
        stored last (on Lambda this function has no room for the ML layer)."""
        require_feature(self.runtime.settings, "predictions")
        organization_id = caller.principal.organization_id
        if self.compute_predictions:
            from okyaku.predictions.service import PredictionService

            service = cast("PredictionService", self._service("predictions", lambda: PredictionService(self.runtime)))
            if target == "lead":
                computed = service.lead_score(organization_id, entity_id)
            else:
                computed = service.deal_forecast(organization_id, entity_id)
            return {**computed, "source": "computed"}
        return self._stored_prediction(organization_id, target, entity_id)

    def _stored_prediction(self, organization_id: uuid.UUID, target: str, entity_id: uuid.UUID) -> dict[str, Any]:
        entity_type = "deal" if target == "deal" else "contact"
        with self._read(organization_id) as session:
            if session.execute(text(f"SELECT 1 FROM {entity_type}s WHERE id = :id"), {"id": entity_id}).first() is None:
                raise NotFound(f"{entity_type} {entity_id} not found", details={"id": str(entity_id)})
            row = session.execute(
                text(
                    "SELECT p.payload, c.scored_at FROM current_predictions c "
                    "JOIN predictions p ON p.id = c.prediction_id WHERE c.entity_id = :id AND c.target = :target"
                ),
                {"id": entity_id, "target": _STORED_TARGET[target]},
            ).first()
        if row is None:
            raise NotFound(
                f"this {entity_type} has no {'lead score' if target == 'lead' else 'forecast'} yet; the scoring "
                "functions score records when they change and every night",
                code="no_prediction",
                details={"entity_id": str(entity_id), "target": target},
            )
        return {**row.payload, "source": "stored", "stored_at": row.scored_at.isoformat()}

    def tool_analyze_text(self, caller: Caller, args: AnalyzeTextArgs) -> dict[str, Any]:
        from okyaku.conversation.responses import AnalyzeTextRequest

        request = AnalyzeTextRequest(text=args.text, type=args.type, direction=args.direction, subject=args.subject)
        analysed = self.conversation.analyse_text(caller.principal.organization_id, request)
        return analysed.model_dump(mode="json")

    def tool_list_approvals(self, caller: Caller, args: ListApprovalsArgs) -> dict[str, Any]:
        from okyaku.agents.approvals import ApprovalFilters

        page = self.approvals.list(
            caller.principal.organization_id, ApprovalFilters(status=args.status), limit=args.limit
        )
        return {"approvals": [proposal_view(row) for row in page.rows], "more": page.next_cursor is not None}

    # --- proposing -------------------------------------------------------------------------------

    def tool_propose_change(self, caller: Caller, args: ProposeChangeArgs) -> dict[str, Any]:
        from okyaku.mcp.proposals import build_proposal

        with self._read(caller.principal.organization_id) as session:
            action, proposal = build_proposal(session, args.type, args.id, args.changes, args.reasoning)
        return self._propose(caller, "propose_change", action, proposal, {"arguments": _jsonable(args)})

    def tool_draft_email(self, caller: Caller, args: DraftEmailArgs) -> dict[str, Any]:
        from okyaku.agents.tools.write import DraftEmailArgs as AgentDraftEmailArgs
        from okyaku.agents.tools.write import draft_email

        ctx = self._tool_context(caller, f"draft_email to {args.contact_id}")
        proposal = _run(draft_email, ctx, AgentDraftEmailArgs(**args.model_dump()))
        return self._propose(caller, "draft_email", "draft_email", proposal, {"arguments": _jsonable(args)})

    def _propose(
        self, caller: Caller, tool: str, action: str, proposal: Any, context: dict[str, Any]
    ) -> dict[str, Any]:
        row = self.approvals.propose(
            caller.principal.organization_id,
            execution_id=None,
            agent=MCP_AGENT,
            action=action,
            proposal=proposal,
            low_risk=False,
            context={"client": caller.client, "tool": tool, **context, **proposal.context},
            auto_apply=False,  # an external agent's change always waits for a person
            requested_by=caller.principal.user_id,
        )
        return {
            "proposal": proposal_view(row),
            "note": APPROVAL_NOTE,
            "approve": {
                "console": REVIEW_PAGE,
                "api": f"POST /api/v1/ai/approvals/{row.id}/approve",
                "follow_up": "list_approvals",
            },
        }

    # --- resources -------------------------------------------------------------------------------

    def read_record(self, caller: Caller, entity_type: str, entity_id: uuid.UUID) -> dict[str, Any]:
        return self.tool_get_record(caller, GetRecordArgs.model_validate({"type": entity_type, "id": entity_id}))

    def recent_records(self, caller: Caller, limit: int = 20) -> list[dict[str, str]]:
        """The most recently updated deals, contacts and companies, for clients that browse resources."""
        from okyaku.db.models import Company, Contact, Deal

        out: list[dict[str, str]] = []
        with self._read(caller.principal.organization_id) as session:
            for entity_type, model in (("deal", Deal), ("contact", Contact), ("company", Company)):
                rows = session.scalars(select(model).order_by(model.updated_at.desc(), model.id).limit(limit))
                for row in rows:
                    out.append({"type": entity_type, "id": str(row.id), "name": _record_name(entity_type, row)})
        return out

    # --- internals -------------------------------------------------------------------------------

    def _read(self, organization_id: uuid.UUID) -> Any:
        from okyaku.chat.execute import read_only

        return read_only(
            self.runtime.db,
            organization_id,
            timeout_ms=self.runtime.settings.ai_chat_statement_timeout_ms,
            zone=self.runtime.settings.ai_chat_timezone,
        )

    def _tool_context(self, caller: Caller, task: str) -> ToolContext:
        from okyaku.agents.tooling import ToolContext

        return ToolContext(
            runtime=self.runtime,
            organization_id=caller.principal.organization_id,
            execution_id=uuid.uuid4(),  # no agent run: the proposals carry no execution
            agent=MCP_AGENT,
            task=task,
            requested_by=caller.principal.user_id,
            services=self.tool_services,
            clock=self.clock,
        )


def _ml_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("sklearn") is not None


def _run(tool: AgentTool, ctx: ToolContext, args: BaseModel) -> Any:
    # The agents' tools are async but only do blocking reads; this runs on a worker thread, so a
    # fresh loop is fine (as chat does).
    return asyncio.run(cast("Coroutine[Any, Any, Any]", tool.execute(ctx, args)))


def _jsonable(args: BaseModel) -> Any:
    return args.model_dump(mode="json", exclude_none=True)


def _record_name(entity_type: str, row: Any) -> str:
    if entity_type == "contact":
        return " ".join(p for p in (row.first_name, row.last_name) if p) or row.email or str(row.id)
    return str(row.name)


def record_uri(entity_type: str, entity_id: uuid.UUID | str) -> str:
    return f"okyaku://{entity_type}/{entity_id}"


def parse_record_uri(uri: str) -> tuple[str, uuid.UUID]:
    """``okyaku://{type}/{id}`` -> (type, id); :class:`NotFound` for anything else."""
    prefix = "okyaku://"
    entity_type, _, raw_id = uri.removeprefix(prefix).partition("/")
    try:
        if not uri.startswith(prefix) or entity_type not in RECORD_TYPES:
            raise ValueError(uri)
        return entity_type, uuid.UUID(raw_id)
    except ValueError:
        raise NotFound(
            f"no resource {uri!r}: records are okyaku://{{type}}/{{id}} with type one of {', '.join(RECORD_TYPES)}",
            details={"uri": uri},
        ) from None


def proposal_view(row: PendingAction) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "status": row.status,
        "agent": row.agent,
        "action": row.action,
        "operation": row.operation,
        "entity_type": row.entity_type,
        "entity_id": str(row.entity_id) if row.entity_id else None,
        "changes": row.changes,
        "reasoning": row.reasoning,
        "client": (row.context or {}).get("client"),
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "result": row.result,
        "rejection_reason": row.rejection_reason,
    }


def cap_result(result: dict[str, Any], max_chars: int) -> dict[str, Any]:
    """Keep a result under ``max_chars`` of JSON: the longest list is halved until it fits (a
    table's rows, search results), and the result says so. Nothing is cut inside a value."""
    size = len(json.dumps(result, default=str))
    if size <= max_chars:
        return result
    out = to_jsonable_python(result)
    dropped = 0
    while len(json.dumps(out)) > max_chars:
        found = _longest_list(out)
        if found is None or len(found) <= 1:
            break
        keep = len(found) // 2
        dropped += len(found) - keep
        del found[keep:]
    if len(json.dumps(out)) > max_chars:
        raise ValidationFailed(
            "the result is too large to return; ask for fewer records or fields",
            details=[field_error("(arguments)", f"the answer would be {size} characters; the limit is {max_chars}")],
            code="result_too_large",
        )
    out["truncated"] = {"dropped_items": dropped, "limit_chars": max_chars}
    return cast("dict[str, Any]", out)


def _longest_list(value: Any) -> list[Any] | None:
    best: list[Any] | None = None
    stack = [value]
    while stack:
        item = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if isinstance(item, list) and (best is None or len(item) > len(best)):
            best = item
        stack.extend(c for c in children if isinstance(c, (dict, list)))
    return best
