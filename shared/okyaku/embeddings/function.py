"""The ``embeddings`` function's wiring: one embedder, indexer and search app per process.

One Lambda serves three triggers: SQS change events (enrichment), the scheduled rule
(backfill) and HTTP (search). ``functions/embeddings/app.py`` dispatches by event shape.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from functools import cached_property
from typing import Any

from fastapi import FastAPI

from okyaku.embeddings.api import create_search_app
from okyaku.embeddings.consumer import handle_sqs_event
from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.embeddings.protocol import Embedder
from okyaku.embeddings.providers import LazyEmbedder
from okyaku.runtime import Runtime

logger = logging.getLogger(__name__)

BACKFILL_SAFETY_MARGIN_S = 20.0  # stop a scheduled backfill this long before Lambda's timeout
BACKFILL_DEFAULT_BUDGET_S = 240.0  # without a Lambda context (local runner)


def is_sqs_event(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        return False
    return all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)


def is_scheduled_event(event: Any) -> bool:
    return isinstance(event, dict) and (
        event.get("detail-type") == "Scheduled Event" or event.get("source") == "aws.events"
    )


def default_embedder(runtime: Runtime) -> Embedder:
    from okyaku.embeddings.llm_adapter import select_embedder  # loads the LLM layer only when needed

    return select_embedder(runtime.settings)


class EmbeddingsFunction:
    def __init__(self, runtime: Runtime | None = None, *, embedder: Embedder | None = None) -> None:
        self.runtime = runtime or Runtime()
        runtime_ = self.runtime
        self.embedder: Embedder = embedder or LazyEmbedder(lambda: default_embedder(runtime_))

    @cached_property
    def app(self) -> FastAPI:
        return create_search_app(self.runtime, embedder=self.embedder)

    @cached_property
    def indexer(self) -> EmbeddingIndexer:
        return EmbeddingIndexer(self.runtime.db, self.embedder)

    def consume(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Change events → embeddings; returns ``batchItemFailures`` for the records to retry."""
        if not self.runtime.settings.ai_rag_enabled:
            # Nothing to keep up to date; a backfill catches up when the feature is switched on.
            logger.info("AI_RAG_ENABLED is false: %d change events acknowledged", len(event.get("Records", [])))
            return {"batchItemFailures": []}
        return handle_sqs_event(event, context, self.indexer)

    def scheduled_backfill(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Embed what lacks a current embedding, stopping before the invocation's time runs out."""
        if not self.runtime.settings.ai_rag_enabled:
            return {"skipped": "AI_RAG_ENABLED is false"}
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        budget = (remaining_ms() / 1000.0 - BACKFILL_SAFETY_MARGIN_S) if callable(remaining_ms) else None
        budget = BACKFILL_DEFAULT_BUDGET_S if budget is None else max(budget, 1.0)
        report = self.indexer.backfill(deadline=time.monotonic() + budget)
        logger.info("backfill: %s", report)
        return asdict(report)
