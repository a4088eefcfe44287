"""The agents feature wired together: start runs, read their logs, and work the queue worker."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from okyaku.agents.approvals import ApprovalService
from okyaku.agents.definitions import AGENTS, rules
from okyaku.agents.dispatch import AgentRunMessage, RunDispatcher, dispatcher_from_settings
from okyaku.agents.framework import AgentDefinition, AgentLimits, AgentRunner, RunOutcome, steps_of
from okyaku.agents.models import AgentExecution, AgentStep, PendingAction
from okyaku.agents.schemas import RunRequest
from okyaku.agents.tools.records import SERVICES
from okyaku.agents.tools.services import ToolServices
from okyaku.clock import utc_now
from okyaku.errors import DependencyUnavailable, NotFound, RateLimited, public_error
from okyaku.queue import consume_batch
from okyaku.runtime import Runtime
from okyaku.tenancy import Principal

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from okyaku.llm.gateway import LLMGateway

logger = logging.getLogger(__name__)

# context key -> the entity it names; checked to exist before a run is queued
FOCUS_KEYS = {"contact_id": "contact", "deal_id": "deal", "company_id": "company"}


@dataclass
class ExecutionView:
    execution: AgentExecution
    steps: list[AgentStep]
    pending_actions: list[PendingAction]


class AgentsService:
    def __init__(
        self,
        runtime: Runtime,
        llm: LLMGateway,
        *,
        dispatcher: RunDispatcher | None = None,
        agents: Mapping[str, AgentDefinition] = AGENTS,
        services: ToolServices | None = None,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.llm = llm
        self.agents = agents
        self.clock = clock
        self.approvals = ApprovalService(runtime, clock=clock)
        self.runner = AgentRunner(
            runtime,
            llm,
            agents,
            self.approvals,
            services or ToolServices(runtime),
            rules=rules(),
            clock=clock,
            monotonic=monotonic,
        )
        self.dispatcher = dispatcher or dispatcher_from_settings(runtime.settings, self.run)

    @property
    def limits(self) -> AgentLimits:
        return AgentLimits.from_settings(self.runtime.settings)

    def require_enabled(self) -> None:
        self.llm.features.require("agents")

    def agent(self, name: str) -> AgentDefinition:
        definition = self.agents.get(name)
        if definition is None:
            raise NotFound(f"no agent named {name!r}", details={"agents": sorted(self.agents)})
        return definition

    # --- runs ------------------------------------------------------------------------------------

    def start_run(self, principal: Principal, agent_name: str, request: RunRequest) -> AgentExecution:
        """Queue a run and hand it to a worker; returns at once with the execution (status queued)."""
        self.require_enabled()
        definition = self.agent(agent_name)
        context = definition.validate_context(request.context)
        organization_id = principal.organization_id
        with self.runtime.db.organization_scope(organization_id) as session:
            self._admit(session, organization_id)
            for key, entity_type in FOCUS_KEYS.items():
                value = getattr(context, key, None)
                if isinstance(value, uuid.UUID):
                    SERVICES[entity_type].get(session, value)  # 404 for a record not in this organization
            execution = AgentExecution(
                agent=definition.name,
                task=request.task or definition.default_task,
                context=context.model_dump(mode="json"),
                status="queued",
                limits=self.limits.as_dict(),
                prompt_version=definition.prompt_version,
                requested_by=principal.user_id,
                created_at=self.clock(),
                updated_at=self.clock(),
            )
            session.add(execution)
            session.flush()
            session.expunge(execution)
        try:
            self.dispatcher.dispatch(AgentRunMessage(organization_id=organization_id, execution_id=execution.id))
        except Exception as error:
            logger.exception("could not dispatch agent run %s", execution.id)
            self._mark_undispatched(organization_id, execution.id, error)
            raise DependencyUnavailable(
                "the agent run could not be queued; try again later",
                code="agent_queue_unavailable",
                details={"execution_id": str(execution.id)},
            ) from error
        return execution

    def _admit(self, session: Session, organization_id: uuid.UUID) -> None:
        """One organization may not fill the shared run queue: at most AI_AGENT_MAX_ACTIVE_RUNS
        queued or running at once (429 with Retry-After beyond); runs that waited in the queue past
        AI_AGENT_QUEUED_TIMEOUT_S are failed first, so a lost message does not hold a slot forever."""
        settings = self.runtime.settings
        # Concurrent starts of one organization take turns, so the count below cannot be raced.
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"agent-runs:{organization_id}"})
        self.fail_stale_queued(session)
        active = session.scalar(
            select(func.count()).select_from(AgentExecution).where(AgentExecution.status.in_(("queued", "running")))
        )
        if (active or 0) >= settings.ai_agent_max_active_runs:
            raise RateLimited(
                f"{active} agent runs of this organization are queued or running; try again when one has finished",
                retry_after_s=30,
                code="too_many_agent_runs",
                details={"active": active, "limit": settings.ai_agent_max_active_runs},
            )

    def fail_stale_queued(self, session: Session) -> int:
        """Fail runs still queued after AI_AGENT_QUEUED_TIMEOUT_S; returns how many."""
        now = self.clock()
        cutoff = now - timedelta(seconds=self.runtime.settings.ai_agent_queued_timeout_s)
        result = session.execute(
            update(AgentExecution)
            .where(AgentExecution.status == "queued", AgentExecution.created_at < cutoff)
            .values(
                status="failed",
                stop_reason="queue_timeout",
                error={"code": "queue_timeout", "message": "the run waited in the queue too long and never started"},
                finished_at=now,
                updated_at=now,
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)

    def run(self, organization_id: uuid.UUID, execution_id: uuid.UUID) -> RunOutcome | None:
        """The worker's entry point (queue message or local thread)."""
        return self.runner.run_blocking(organization_id, execution_id)

    def run_record(self, record: SQSRecord) -> None:
        """One agent-run queue message -> its run (raises to have the message retried)."""
        message = AgentRunMessage.model_validate_json(record.body)
        self.run(message.organization_id, message.execution_id)

    def consume(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """An SQS event of agent-run messages -> ``batchItemFailures`` for the ones to retry."""
        return consume_batch(event, context, on_record=self.run_record, log=logger)

    def _mark_undispatched(self, organization_id: uuid.UUID, execution_id: uuid.UUID, error: Exception) -> None:
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            execution = session.get(AgentExecution, execution_id)
            if execution is not None and execution.status == "queued":
                execution.status = "failed"
                execution.stop_reason = "dispatch_failed"
                execution.error = {"code": "dispatch_failed", "message": public_error(error)["message"]}
                execution.finished_at = now
                execution.updated_at = now

    # --- reading ---------------------------------------------------------------------------------

    def execution(self, organization_id: uuid.UUID, execution_id: uuid.UUID) -> ExecutionView:
        self.require_enabled()
        with self.runtime.db.organization_scope(organization_id) as session:
            execution = session.get(AgentExecution, execution_id)
            if execution is None:
                raise NotFound(f"agent execution {execution_id} not found", details={"id": str(execution_id)})
            actions = session.scalars(
                select(PendingAction)
                .where(PendingAction.execution_id == execution_id)
                .order_by(PendingAction.created_at, PendingAction.id)
            )
            return ExecutionView(execution, list(steps_of(session, execution_id)), list(actions))

    def executions(
        self, organization_id: uuid.UUID, *, agent: str | None, status: str | None, limit: int
    ) -> list[AgentExecution]:
        self.require_enabled()
        with self.runtime.db.organization_scope(organization_id) as session:
            self.fail_stale_queued(session)
            statement = select(AgentExecution)
            if agent is not None:
                statement = statement.where(AgentExecution.agent == agent)
            if status is not None:
                statement = statement.where(AgentExecution.status == status)
            statement = statement.order_by(AgentExecution.created_at.desc(), AgentExecution.id.desc()).limit(limit)
            return list(session.scalars(statement))
