"""Consuming an SQS batch the one way: Powertools' partial-batch processing.

Every queue consumer (change events, agent runs, per-organization scans) settles its records
here, so a failed record is reported in ``batchItemFailures`` (retried by SQS, then moved to
the queue's DLQ after ``maxReceiveCount``) while the others are deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from okyaku.logs import correlation_id

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = logging.getLogger(__name__)

RecordHandler = Callable[["SQSRecord"], object]
# For consumers that work on the whole batch first (embeddings batch their model calls): given
# the batch's records, return the per-record handler that settles each one.
BatchPreparer = Callable[[Sequence["SQSRecord"]], RecordHandler]


def consume_batch(
    event: Mapping[str, Any],
    context: Any,
    *,
    on_record: RecordHandler | None = None,
    on_batch: BatchPreparer | None = None,
    log: logging.Logger = logger,
) -> dict[str, Any]:
    """Settle every record of an SQS batch; the failed ones come back in ``batchItemFailures``.

    Failures are reported even when every record failed, rather than raised: the effect on SQS
    is the same (all retried) and callers such as the local runner get one response shape.
    """
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    records = event.get("Records") or []
    if on_batch is not None:
        record_handler = on_batch([SQSRecord(r) for r in records])
    elif on_record is not None:
        record_handler = on_record
    else:
        raise ValueError("consume_batch needs on_record or on_batch")

    def settle(record: SQSRecord) -> object:
        with correlation_id(record.message_id):
            return record_handler(record)

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    response: dict[str, Any] = dict(
        process_partial_response(event=dict(event), record_handler=settle, processor=processor, context=context)
    )
    failures = response.get("batchItemFailures") or []
    if failures:
        log.warning("%d of %d queue messages failed and will be retried", len(failures), len(records))
    return response
