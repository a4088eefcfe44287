"""The mailboxes function's non-HTTP triggers.

- ``on_schedule``: the rule fans out one message per mailbox onto the function's own queue
  (``MAILBOX_SYNC_QUEUE_URL``); without one each mailbox is synced here, in turn.
- ``on_record``: one message = one mailbox's sync. A mailbox's own failure (password refused,
  server down) is recorded on it and the message is done; only what is worth a retry (the
  database) raises, so SQS redelivers that one message, then dead-letters it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from okyaku.errors import BadRequest

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from okyaku.mailboxes.service import MailboxService


def make_record_handler(service: MailboxService) -> Any:
    from okyaku.fanout import job_message
    from okyaku.mailboxes.service import MailboxSyncJob

    def on_record(record: SQSRecord) -> dict[str, Any]:
        job = job_message(record.body, MailboxSyncJob)
        if job is None:
            raise BadRequest("not a mailbox sync job", code="not_a_mailbox_job")
        return service.sync(job.organization_id, job.mailbox_id).model_dump(mode="json")

    return on_record


def make_schedule_handler(service: MailboxService) -> Any:
    def on_schedule(_event: Mapping[str, Any], _context: Any) -> dict[str, Any]:
        return service.fan_out()

    return on_schedule
