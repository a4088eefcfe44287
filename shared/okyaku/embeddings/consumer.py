"""The change-event consumer: a batch of SQS records in, ``batchItemFailures`` out.

Texts of the whole batch are loaded, embedded and written together (the model and the
database are fastest in batches); then each message is settled on its own: its error is raised
(reported in ``batchItemFailures``, so only it is retried and a poison message ends in the DLQ)
or, if the batched write could not take it, it is written alone. Records the embedding model
failed on are left for the backfill and their message acknowledged (``indexer``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from okyaku.embeddings.indexer import EmbeddingIndexer, IncomingMessage
from okyaku.queue import RecordHandler, consume_batch

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = logging.getLogger(__name__)


def prepare_batch(indexer: EmbeddingIndexer, records: Sequence[SQSRecord]) -> RecordHandler:
    """Embed and write the whole batch; return the per-record settle step."""
    batch = indexer.prepare([IncomingMessage(message_id=r.message_id, body=r.body) for r in records])
    batch.write_all()

    def settle(record: SQSRecord) -> None:
        batch.apply(record.message_id)  # raises the message's error; writes what write_all could not

    return settle


def handle_sqs_event(event: Mapping[str, Any], context: Any, indexer: EmbeddingIndexer) -> dict[str, Any]:
    """Process an SQS event (as Lambda delivers it); ``context`` may be None (local runner, tests)."""
    return consume_batch(event, context, on_batch=lambda records: prepare_batch(indexer, records), log=logger)
