"""The non-HTTP triggers of the ``embeddings`` function: change events -> embeddings (SQS) and
the scheduled backfill. The function module builds one embedder and hands it to these and to
the search app.

The hourly backfill fans out one message per organization onto the function's jobs queue
(EMBEDDING_JOBS_QUEUE_URL), so that a big organization cannot use up the invocation of every
other, and each is retried on its own. A job that runs out of time sends its continuation, a new
message for the same organization (it resumes cheaply: up-to-date records are skipped). The jobs
come to ``on_batch`` too, told apart by their ``job`` field. Without a queue (the local runner)
the backfill visits every organization in-process, within the invocation's time."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from okyaku.clock import work_deadline
from okyaku.embeddings.consumer import prepare_batch
from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.embeddings.protocol import Embedder
from okyaku.embeddings.providers import LazyEmbedder
from okyaku.errors import DependencyUnavailable
from okyaku.fanout import enqueue, enqueue_per_organization, job_message
from okyaku.features import feature_enabled
from okyaku.queue import RecordHandler, consume_batch
from okyaku.runtime import Runtime

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = logging.getLogger(__name__)

BACKFILL_SAFETY_MARGIN_S = 20.0  # stop a scheduled backfill this long before Lambda's timeout
BACKFILL_DEFAULT_BUDGET_S = 240.0  # without a Lambda context (local runner)


def default_embedder(runtime: Runtime) -> Embedder:
    """Ollama's embedding model through the gateway (or the in-process fallback), loaded on first use."""

    def load() -> Embedder:
        from okyaku.embeddings.llm_adapter import select_embedder  # loads the LLM layer only when needed

        return select_embedder(runtime.settings)

    return LazyEmbedder(load)


class BackfillJob(BaseModel):
    """One organization's backfill: a message on the function's jobs queue."""

    job: Literal["embeddings_backfill"] = "embeddings_backfill"
    organization_id: uuid.UUID


class EmbeddingTriggers:
    def __init__(self, runtime: Runtime, embedder: Embedder) -> None:
        self.runtime = runtime
        self.embedder = embedder

    @cached_property
    def indexer(self) -> EmbeddingIndexer:
        return EmbeddingIndexer(self.runtime.db, self.embedder)

    def on_batch(self, records: Sequence[SQSRecord]) -> RecordHandler:
        """Change events -> embeddings, the batch embedded together; backfill jobs one by one."""
        jobs = {r.message_id: job for r in records if (job := job_message(r.body, BackfillJob)) is not None}
        changes = [r for r in records if r.message_id not in jobs]
        if not feature_enabled(self.runtime.settings, "rag"):
            # Nothing to keep up to date; a backfill catches up when the feature is switched on.
            logger.info("AI_RAG_ENABLED is false: %d queue messages acknowledged", len(records))
            return lambda record: None
        settle_change = prepare_batch(self.indexer, changes) if changes else None

        def settle(record: SQSRecord) -> object:
            job = jobs.get(record.message_id)
            if job is not None:
                return self.run_backfill_job(job)
            assert settle_change is not None
            return settle_change(record)

        return settle

    def run_backfill_job(self, job: BackfillJob) -> dict[str, Any]:
        """One organization's backfill; out of time, its continuation goes back on the queue
        (raises, so that this message is retried, if it cannot be sent)."""
        deadline = work_deadline(margin_s=BACKFILL_SAFETY_MARGIN_S, default_budget_s=BACKFILL_DEFAULT_BUDGET_S)
        report = self.indexer.backfill(organization_ids=[job.organization_id], deadline=deadline)
        outcome: dict[str, Any] = asdict(report)
        queue_url = self.runtime.settings.embedding_jobs_queue_url
        # Not when the model failed: the next scheduled fan-out tries again, rather than a hot loop.
        if not report.complete and report.embedder_error is None and queue_url:
            sent = enqueue(self.runtime.settings, queue_url, {f"backfill:{job.organization_id}": job.model_dump_json()})
            if sent["not_queued"]:
                raise DependencyUnavailable(
                    "the rest of the backfill could not be queued",
                    details={"organization_id": str(job.organization_id)},
                )
            outcome["continued"] = True
        logger.info("backfill of %s: %s", job.organization_id, outcome)
        return outcome

    def consume(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """An SQS event as Lambda delivers it -> ``batchItemFailures`` for the records to retry."""
        return consume_batch(event, context, on_batch=self.on_batch, log=logger)

    def on_schedule(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """One backfill job per organization on the jobs queue; without one, embed what lacks a
        current embedding in every organization here, stopping before the invocation's time runs out."""
        settings = self.runtime.settings
        if not feature_enabled(settings, "rag"):
            return {"skipped": "AI_RAG_ENABLED is false"}
        if settings.embedding_jobs_queue_url:
            return enqueue_per_organization(
                settings,
                self.runtime.db,
                settings.embedding_jobs_queue_url,
                lambda organization_id: BackfillJob(organization_id=organization_id),
                label="backfill",
            )
        deadline = work_deadline(context, margin_s=BACKFILL_SAFETY_MARGIN_S, default_budget_s=BACKFILL_DEFAULT_BUDGET_S)
        report = self.indexer.backfill(deadline=deadline)
        logger.info("backfill: %s", report)
        return asdict(report)
