"""The SQS consumer: a batch of change events in, ``batchItemFailures`` out.

Texts of the whole batch are loaded, embedded and written together (the model and the
database are fastest in batches); then Powertools' ``BatchProcessor`` settles each message:
its error is raised (and reported in ``batchItemFailures``, so only it is retried and a
poison message ends in the DLQ) or, if the batched write could not take it, it is written alone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from okyaku.embeddings.indexer import EmbeddingIndexer, IncomingMessage

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = logging.getLogger(__name__)


def handle_sqs_event(event: dict[str, Any], context: Any, indexer: EmbeddingIndexer) -> dict[str, Any]:
    """Process an SQS event (as Lambda delivers it); ``context`` may be None (local runner, tests)."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    records = event.get("Records") or []
    batch = indexer.prepare(
        [IncomingMessage(message_id=str(r.get("messageId", "")), body=str(r.get("body", ""))) for r in records]
    )

    batch.write_all()

    def write_record(record: SQSRecord) -> None:
        batch.apply(record.message_id)  # raises the message's error; writes what write_all could not

    # Report failures even when every record failed, rather than raising: the effect on SQS is
    # the same (all retried) and callers such as the local runner get one response shape.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response: dict[str, Any] = dict(
        process_partial_response(event=event, record_handler=write_record, processor=processor, context=context)
    )
    failures = response.get("batchItemFailures", [])
    if failures:
        logger.warning("%d of %d change events failed and will be retried", len(failures), len(records))
    return response
