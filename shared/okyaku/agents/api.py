"""The agents API (``agents`` function): runs under /api/v1/ai/agents, the approval queue under
/api/v1/ai/approvals.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time.

AI_AGENTS_ENABLED=false switches off running and inspecting agents (503 feature_disabled); the
approval queue stays open, so people can still review what agents proposed before."""

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response, status

from okyaku.agents.approvals import ApprovalFilters
from okyaku.agents.dispatch import RunDispatcher
from okyaku.agents.models import PendingAction
from okyaku.agents.policy import ApprovalPolicy, StoredPolicy
from okyaku.agents.schemas import (
    ActionStatus,
    AgentOut,
    ApprovalPageOut,
    ApprovalPolicyOut,
    ApprovalRefusalOut,
    ApproveRequest,
    ExecutionOut,
    ExecutionStatus,
    ExecutionSummaryOut,
    PendingActionOut,
    RejectRequest,
    RunAccepted,
    RunRequest,
    StepOut,
)
from okyaku.agents.service import AgentsService
from okyaku.clock import utc_now
from okyaku.http import PrincipalDep, create_app
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.web import install_llm
from okyaku.runtime import Runtime
from okyaku.tenancy import Principal, require_admin

_AGENT_ERRORS: dict[int | str, dict[str, Any]] = {503: {"description": "Agents are disabled (AI_AGENTS_ENABLED=false)"}}


def get_agents(request: Request) -> AgentsService:
    service: AgentsService = request.app.state.agents
    return service


AgentsDep = Annotated[AgentsService, Depends(get_agents)]
_NOT_PERMITTED: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "The approvals policy does not let you decide on it (approval_not_permitted); it stays pending"
    }
}


def actions_out(agents: AgentsService, principal: Principal, rows: list[PendingAction]) -> list[PendingActionOut]:
    """The rows as the caller sees them: with whether the approvals policy lets them approve each."""
    verdicts = agents.approvals.permissions(principal.organization_id, rows, principal.user_id)
    out = []
    for row in rows:
        refused = verdicts.get(row.id)
        view = PendingActionOut.model_validate(row)
        view.can_approve = refused is None
        view.approval_refusal = ApprovalRefusalOut(rule=refused.rule, message=refused.message) if refused else None
        out.append(view)
    return out


def policy_out(stored: StoredPolicy) -> ApprovalPolicyOut:
    return ApprovalPolicyOut(**stored.policy.model_dump(), updated_at=stored.updated_at, updated_by=stored.updated_by)


def agents_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/ai/agents", tags=["ai agents"])

    @router.get("", response_model=list[AgentOut], responses=_AGENT_ERRORS, summary="Agents and their tools")
    def list_agents(_: PrincipalDep, agents: AgentsDep) -> list[AgentOut]:
        agents.require_enabled()
        limits = agents.limits.as_dict()
        return [AgentOut.model_validate({**a.describe(), "limits": limits}) for a in agents.agents.values()]

    @router.post(
        "/{agent}/run",
        response_model=RunAccepted,
        status_code=status.HTTP_202_ACCEPTED,
        responses=_AGENT_ERRORS,
        summary="Start a run; it continues in the background",
        description="Returns the execution id at once. Follow it at `/api/v1/ai/agents/executions/{id}`. "
        "Proposed changes wait in `/api/v1/ai/approvals`.",
    )
    def run_agent(
        agent: str, body: RunRequest, principal: PrincipalDep, agents: AgentsDep, response: Response
    ) -> RunAccepted:
        execution = agents.start_run(principal, agent, body)
        location = f"/api/v1/ai/agents/executions/{execution.id}"
        response.headers["Location"] = location
        return RunAccepted(
            execution_id=execution.id,
            agent=execution.agent,
            status="queued",
            links={"self": location, "approvals": f"/api/v1/ai/approvals?execution_id={execution.id}"},
        )

    @router.get("/executions", response_model=list[ExecutionSummaryOut], responses=_AGENT_ERRORS, summary="Recent runs")
    def list_executions(
        principal: PrincipalDep,
        agents: AgentsDep,
        agent: str | None = None,
        status_: Annotated[ExecutionStatus | None, Query(alias="status")] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> list[ExecutionSummaryOut]:
        rows = agents.executions(principal.organization_id, agent=agent, status=status_, limit=limit)
        return [ExecutionSummaryOut.model_validate(r) for r in rows]

    @router.get(
        "/executions/{execution_id}",
        response_model=ExecutionOut,
        responses=_AGENT_ERRORS,
        summary="A run's progress, steps and result",
    )
    def get_execution(execution_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep) -> ExecutionOut:
        view = agents.execution(principal.organization_id, execution_id)
        summary = ExecutionSummaryOut.model_validate(view.execution)
        return ExecutionOut(
            **summary.model_dump(),
            pending_actions=actions_out(agents, principal, list(view.pending_actions)),
            steps=[StepOut.model_validate(s) for s in view.steps],
        )

    return router


def approvals_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1/ai/approvals", tags=["ai approvals"])

    # Before /{action_id}: "policy" is not an action id.
    @router.get("/policy", response_model=ApprovalPolicyOut, summary="Who may approve what (any member may read it)")
    def get_policy(principal: PrincipalDep, agents: AgentsDep) -> ApprovalPolicyOut:
        return policy_out(agents.approvals.policy(principal.organization_id))

    @router.put(
        "/policy",
        response_model=ApprovalPolicyOut,
        responses={403: {"description": "Only an organization admin may change it"}},
        summary="Replace the approvals policy (admins only; fields left out take their defaults)",
    )
    def put_policy(body: ApprovalPolicy, principal: PrincipalDep, agents: AgentsDep) -> ApprovalPolicyOut:
        require_admin(principal, "change the approvals policy")
        stored = agents.approvals.set_policy(principal.organization_id, body, updated_by=principal.user_id)
        return policy_out(stored)

    @router.get("", response_model=ApprovalPageOut, summary="Proposed changes, newest first")
    def list_approvals(
        principal: PrincipalDep,
        agents: AgentsDep,
        status_: Annotated[ActionStatus | None, Query(alias="status")] = None,
        agent: str | None = None,
        entity_type: str | None = None,
        entity_id: uuid.UUID | None = None,
        execution_id: uuid.UUID | None = None,
        action: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        cursor: str | None = None,
    ) -> ApprovalPageOut:
        filters = ApprovalFilters(status_, agent, entity_type, entity_id, execution_id, action)
        page = agents.approvals.list(principal.organization_id, filters, limit=limit, cursor=cursor)
        return ApprovalPageOut(data=actions_out(agents, principal, page.rows), next_cursor=page.next_cursor)

    @router.get("/{action_id}", response_model=PendingActionOut, summary="One proposed change")
    def get_approval(action_id: uuid.UUID, principal: PrincipalDep, agents: AgentsDep) -> PendingActionOut:
        [view] = actions_out(agents, principal, [agents.approvals.get(principal.organization_id, action_id)])
        return view

    @router.post(
        "/{action_id}/approve",
        response_model=PendingActionOut,
        responses={
            **_NOT_PERMITTED,
            409: {"description": "Expired, already decided, or the record changed since the proposal"},
        },
        summary="Apply a proposed change (optionally edited)",
        description="Applied once: approving again returns the first result.",
    )
    def approve(
        action_id: uuid.UUID,
        principal: PrincipalDep,
        agents: AgentsDep,
        body: ApproveRequest | None = None,
    ) -> PendingActionOut:
        row = agents.approvals.approve(
            principal.organization_id,
            action_id,
            reviewer_id=principal.user_id,
            edited_fields=body.edited_fields if body else None,
        )
        [view] = actions_out(agents, principal, [row])
        return view

    @router.post(
        "/{action_id}/reject",
        response_model=PendingActionOut,
        responses={**_NOT_PERMITTED, 409: {"description": "Already approved or failed"}},
        summary="Reject a proposed change, with a reason",
    )
    def reject(
        action_id: uuid.UUID, body: RejectRequest, principal: PrincipalDep, agents: AgentsDep
    ) -> PendingActionOut:
        row = agents.approvals.reject(
            principal.organization_id, action_id, reviewer_id=principal.user_id, reason=body.reason
        )
        [view] = actions_out(agents, principal, [row])
        return view

    return router


def agents_service(
    runtime: Runtime | None = None,
    llm: LLMGateway | None = None,
    *,
    dispatcher: RunDispatcher | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> AgentsService:
    """The service the agents function builds once per cold start, for HTTP and its run queue."""
    runtime = runtime or Runtime()
    return AgentsService(runtime, llm or LLMGateway.from_settings(runtime.settings), dispatcher=dispatcher, clock=clock)


def create_agents_app(
    runtime: Runtime | None = None,
    llm: LLMGateway | None = None,
    *,
    dispatcher: RunDispatcher | None = None,
    clock: Callable[[], datetime] = utc_now,
    service: AgentsService | None = None,
) -> FastAPI:
    """The HTTP app over ``service`` (built here from the other arguments when not given)."""
    service = service or agents_service(runtime, llm, dispatcher=dispatcher, clock=clock)
    app = create_app(
        "Okyaku AI agents",
        service.runtime,
        description="Agents that read the CRM and propose changes; people approve, edit or reject them.",
    )
    install_llm(app, service.llm)
    app.state.agents = service
    app.include_router(agents_router())
    app.include_router(approvals_router())
    return app
