"""Getting a queued run to a worker: an SQS message in AWS (the same ``agents`` function consumes
the queue), a background thread locally and in tests. Either way the worker claims the run once,
so a message delivered twice runs it once."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from pydantic import BaseModel

from okyaku.aws import boto3_client
from okyaku.config import Settings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

logger = logging.getLogger(__name__)

RunExecution = Callable[[uuid.UUID, uuid.UUID], object]


class AgentRunMessage(BaseModel):
    """The queue message body: which run to execute, in which organization."""

    organization_id: uuid.UUID
    execution_id: uuid.UUID


class RunDispatcher(Protocol):
    def dispatch(self, message: AgentRunMessage) -> None:
        """Hand the run over, or raise (the run is then marked failed)."""


class SqsRunDispatcher:
    def __init__(
        self, queue_url: str, *, client: SQSClient | None = None, endpoint_url: str = "", region: str = "us-east-1"
    ) -> None:
        self.queue_url = queue_url
        self._client = client
        self._endpoint_url = endpoint_url
        self._region = region

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = boto3_client("sqs", endpoint_url=self._endpoint_url, region=self._region)
        return self._client

    def dispatch(self, message: AgentRunMessage) -> None:
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=message.model_dump_json())


class ThreadRunDispatcher:
    """Runs each execution on its own daemon thread (the local runner, tests). Not for Lambda:
    a thread does not outlive the response there."""

    def __init__(self, run: RunExecution) -> None:
        self._run = run
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def dispatch(self, message: AgentRunMessage) -> None:
        thread = threading.Thread(
            target=self._safe_run,
            args=(message.organization_id, message.execution_id),
            name=f"agent-run-{message.execution_id}",
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _safe_run(self, organization_id: uuid.UUID, execution_id: uuid.UUID) -> None:
        try:
            self._run(organization_id, execution_id)
        except Exception:  # the run records its own failures; this is what it could not record
            logger.exception("agent run %s could not be completed", execution_id)

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Join the runs started so far; True when all have finished."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)
        return not any(t.is_alive() for t in threads)


def dispatcher_from_settings(settings: Settings, run: RunExecution) -> RunDispatcher:
    if settings.agent_runs_queue_url:
        return SqsRunDispatcher(
            settings.agent_runs_queue_url, endpoint_url=settings.aws_endpoint_url, region=settings.aws_region
        )
    return ThreadRunDispatcher(run)
