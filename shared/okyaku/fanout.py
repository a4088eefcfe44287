"""Scheduled work fanned out one message per organization, so that one big tenant cannot starve
the others and a failure is retried (then dead-lettered) for that organization alone.

With a queue URL the messages go to the function's own jobs queue (ten per SendMessageBatch
call; what SQS refuses is tried once more, then reported: the next scheduled run covers it).
Without one (the local runner, tests) each message is run in-process, one failing organization
logged and reported without stopping the others.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from okyaku.config import Settings
from okyaku.db import Database
from okyaku.errors import public_error
from okyaku.tenancy import list_organization_ids

logger = logging.getLogger(__name__)

Message = TypeVar("Message", bound=BaseModel)


def job_message(body: str, model: type[Message]) -> Message | None:
    """The job a queue message holds, or None for any other body (a change event, which shares
    the function's SQS trigger). Jobs carry a ``job`` field; change events have none."""
    if '"job"' not in body:  # skip the parse for the common case
        return None
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None


def fan_out(
    messages: Sequence[Message],
    *,
    settings: Settings,
    queue_url: str,
    run_here: Callable[[Message], object],
    label: Callable[[Message], str],
) -> dict[str, Any]:
    if queue_url:
        return enqueue(settings, queue_url, {label(m): m.model_dump_json() for m in messages})
    done, failed = 0, []
    for message in messages:
        try:
            run_here(message)
            done += 1
        except Exception as error:  # one organization's failure must not stop the others
            logger.exception("%s failed", label(message))
            failed.append({**message.model_dump(mode="json"), "error": public_error(error)})
    return {"done": done, "failed": failed}


def enqueue_per_organization(
    settings: Settings, db: Database, queue_url: str, job: Callable[[uuid.UUID], BaseModel], *, label: str
) -> dict[str, Any]:
    """One ``job(organization_id)`` message per organization onto ``queue_url``; the report says
    how many organizations there are, and what was queued and what not."""
    organizations = list_organization_ids(db)
    bodies = {f"{label}:{o}": job(o).model_dump_json() for o in organizations}
    return {"organizations": len(organizations), **enqueue(settings, queue_url, bodies)}


def enqueue(settings: Settings, queue_url: str, bodies: dict[str, str]) -> dict[str, Any]:
    """Send each body (keyed by a label for the report); returns what was queued and what not."""
    from okyaku.aws import boto3_client

    sqs = boto3_client("sqs", endpoint_url=settings.aws_endpoint_url, region=settings.aws_region)
    pending = list(bodies)
    for _attempt in range(2):
        refused: list[str] = []
        for start in range(0, len(pending), 10):
            chunk = pending[start : start + 10]
            entries = [{"Id": str(i), "MessageBody": bodies[key]} for i, key in enumerate(chunk)]
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            refused += [chunk[int(f["Id"])] for f in response.get("Failed", [])]
        pending = refused
        if not pending:
            break
    if pending:
        logger.error("could not queue %d messages: %s", len(pending), pending[:5])
    return {"queued": len(bodies) - len(pending), "not_queued": pending}
