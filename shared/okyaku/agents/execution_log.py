"""The execution log: every step of an agent run, recorded as it happens."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from okyaku.agents.models import AgentExecution, AgentStep
from okyaku.runtime import Runtime


class RunInProgress(Exception):
    """Another worker holds this run; a queue message for it should be retried later."""


class ExecutionLog:
    """Each step is written in its own short transaction, so a run's progress is visible while it
    runs and a crash loses at most the step in flight."""

    def __init__(self, runtime: Runtime, organization_id: uuid.UUID, execution_id: uuid.UUID) -> None:
        self.db = runtime.db
        self.organization_id = organization_id
        self.execution_id = execution_id

    def claim(self, now: datetime, stale_after_s: float) -> AgentExecution | None:
        """queued → running, once: a redelivered message finds the run finished (``None``) or, while
        another worker runs it, raises :class:`RunInProgress` so the queue asks again later. A run
        left ``running`` by a worker that died is marked failed when the message comes back."""
        with self.db.organization_scope(self.organization_id) as session:
            execution = session.get(AgentExecution, self.execution_id, with_for_update=True)
            if execution is None:
                return None
            if execution.status == "running":
                if execution.updated_at.timestamp() >= now.timestamp() - stale_after_s:
                    raise RunInProgress(f"agent run {self.execution_id} is being run by another worker")
                execution.status = "failed"
                execution.stop_reason = "worker_lost"
                execution.error = {"code": "worker_lost", "message": "the worker running this agent stopped"}
                execution.finished_at = now
                execution.updated_at = now
                return None
            if execution.status != "queued":
                return None
            execution.status = "running"
            execution.started_at = now
            execution.updated_at = now
            session.flush()
            session.expunge(execution)
            return execution

    def step(self, iteration: int, kind: str, now: datetime, **values: Any) -> None:
        with self.db.organization_scope(self.organization_id) as session:
            # A log line need not wait for the disk flush: a database crash could lose the last
            # few milliseconds of steps, never a CRM change (those commit synchronously).
            session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            seq = session.execute(
                update(AgentExecution)
                .where(AgentExecution.id == self.execution_id)
                .values(
                    step_count=AgentExecution.step_count + 1,
                    iterations=func.greatest(AgentExecution.iterations, iteration),
                    prompt_tokens=AgentExecution.prompt_tokens + values.get("prompt_tokens", 0),
                    completion_tokens=AgentExecution.completion_tokens + values.get("completion_tokens", 0),
                    updated_at=now,
                )
                .returning(AgentExecution.step_count)
            ).scalar_one()
            session.add(
                AgentStep(
                    execution_id=self.execution_id,
                    seq=seq,
                    iteration=iteration,
                    kind=kind,
                    created_at=now,
                    **{k: to_jsonable_python(v) if k in _JSON_STEP_FIELDS else v for k, v in values.items()},
                )
            )

    def finish(
        self,
        now: datetime,
        status: str,
        stop_reason: str,
        *,
        answer: str | None = None,
        error: dict[str, Any] | None = None,
        model: str | None = None,
        verification: dict[str, Any] | None = None,
    ) -> None:
        with self.db.organization_scope(self.organization_id) as session:
            session.execute(
                update(AgentExecution)
                .where(AgentExecution.id == self.execution_id)
                .values(
                    status=status,
                    stop_reason=stop_reason,
                    answer=answer,
                    error=to_jsonable_python(error) if error else None,
                    model=model,
                    verification=verification,
                    finished_at=now,
                    updated_at=now,
                )
            )


_JSON_STEP_FIELDS = {"tool_calls", "arguments", "result", "error"}


def steps_of(session: Session, execution_id: uuid.UUID) -> Sequence[AgentStep]:
    return list(
        session.scalars(select(AgentStep).where(AgentStep.execution_id == execution_id).order_by(AgentStep.seq))
    )
