"""The non-HTTP triggers of the ``embeddings`` function: change events -> embeddings (SQS) and
the scheduled backfill. The function module builds one embedder and hands it to these and to
the search app."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import cached_property
from typing import TYPE_CHECKING, Any

from okyaku.embeddings.consumer import prepare_batch
from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.embeddings.protocol import Embedder
from okyaku.embeddings.providers import LazyEmbedder
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


class EmbeddingTriggers:
    def __init__(self, runtime: Runtime, embedder: Embedder) -> None:
        self.runtime = runtime
        self.embedder = embedder

    @cached_property
    def indexer(self) -> EmbeddingIndexer:
        return EmbeddingIndexer(self.runtime.db, self.embedder)

    def on_batch(self, records: Sequence[SQSRecord]) -> RecordHandler:
        """Change events -> embeddings, the batch embedded together."""
        if not feature_enabled(self.runtime.settings, "rag"):
            # Nothing to keep up to date; a backfill catches up when the feature is switched on.
            logger.info("AI_RAG_ENABLED is false: %d change events acknowledged", len(records))
            return lambda record: None
        return prepare_batch(self.indexer, records)

    def consume(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """An SQS event as Lambda delivers it -> ``batchItemFailures`` for the records to retry."""
        return consume_batch(event, context, on_batch=self.on_batch, log=logger)

    def on_schedule(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """Embed what lacks a current embedding, stopping before the invocation's time runs out."""
        if not feature_enabled(self.runtime.settings, "rag"):
            return {"skipped": "AI_RAG_ENABLED is false"}
        remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
        budget = (remaining_ms() / 1000.0 - BACKFILL_SAFETY_MARGIN_S) if callable(remaining_ms) else None
        budget = BACKFILL_DEFAULT_BUDGET_S if budget is None else max(budget, 1.0)
        report = self.indexer.backfill(deadline=time.monotonic() + budget)
        logger.info("backfill: %s", report)
        return asdict(report)
