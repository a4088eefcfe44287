"""Telling a worker that an e-mail is queued: an SQS message on the e-mail function's own queue in
AWS (``EMAIL_QUEUE_URL``), a background thread locally and in tests. The outbox row is the truth
either way: a lost message only delays the e-mail until the next sweep, and a message delivered
twice sends it once (the worker claims the row)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from okyaku.config import Settings

logger = logging.getLogger(__name__)


class EmailJob(BaseModel):
    """A message on the e-mail queue: send one e-mail, or sweep one organization's due ones."""

    job: Literal["send", "sweep"]
    organization_id: uuid.UUID
    email_id: uuid.UUID | None = None


class EmailDispatcher(Protocol):
    def dispatch(self, job: EmailJob) -> None: ...


class SqsEmailDispatcher:
    def __init__(self, queue_url: str, *, endpoint_url: str = "", region: str = "us-east-1") -> None:
        self.queue_url = queue_url
        self.endpoint_url = endpoint_url
        self.region = region
        self._client: Any = None

    def dispatch(self, job: EmailJob) -> None:
        from okyaku.aws import boto3_client

        if self._client is None:
            self._client = boto3_client("sqs", endpoint_url=self.endpoint_url, region=self.region)
        self._client.send_message(QueueUrl=self.queue_url, MessageBody=job.model_dump_json())


class ThreadEmailDispatcher:
    """Sends on a daemon thread (the local runner, tests); not for Lambda, where a thread does not
    outlive the response (there the queue, or the sweep, does it)."""

    def __init__(self, run: Callable[[EmailJob], object]) -> None:
        self._run = run
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def dispatch(self, job: EmailJob) -> None:
        thread = threading.Thread(target=self._safe_run, args=(job,), name=f"email-{job.email_id}", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _safe_run(self, job: EmailJob) -> None:
        try:
            self._run(job)
        except Exception:  # the row stays queued: the sweep sends it
            logger.exception("e-mail %s could not be sent now; the sweep will retry", job.email_id)

    def wait(self, timeout_s: float = 30.0) -> bool:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)
        return not any(t.is_alive() for t in threads)


def dispatcher_from_settings(settings: Settings, run: Callable[[EmailJob], object]) -> EmailDispatcher:
    if settings.email_queue_url:
        return SqsEmailDispatcher(
            settings.email_queue_url, endpoint_url=settings.aws_endpoint_url, region=settings.aws_region
        )
    return ThreadEmailDispatcher(run)
