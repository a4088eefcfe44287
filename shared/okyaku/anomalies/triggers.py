"""The anomalies function's non-HTTP triggers.

- ``on_schedule``: the daily rule fans out one SQS message per organization onto the function's
  own queue (``ANOMALY_SCAN_QUEUE_URL``), and on Mondays (UTC) one more per organization for the
  weekly insights of the week just ended. One rule rather than two because OpenFaaS's
  cron-connector gives a function one schedule: the three targets then behave the same. Without a
  queue (local runs) each organization is handled in-process, one failing organization logged and
  reported without stopping the others.
- ``on_record``: one message = one organization's scan or weekly run. Raising has SQS redeliver
  that one message (then its DLQ); a scan is idempotent (dedup, notifications once), so a retry
  is safe. A message whose e-mails could not all be sent is retried too; the rows stay pending
  either way, so the next run sends them if the retries run out.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from okyaku.errors import DependencyUnavailable
from okyaku.features import feature_enabled
from okyaku.tenancy import list_organization_ids

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    from okyaku.anomalies.service import AnomalyService

logger = logging.getLogger(__name__)

Job = Literal["scan", "weekly"]


class OrganizationJob(BaseModel):
    """The body of a message on the anomalies queue."""

    job: Job
    organization_id: uuid.UUID
    week_start: date | None = None


class EmailDeliveryFailed(DependencyUnavailable):
    code = "email_delivery_failed"


def jobs_of(event: Mapping[str, Any], today: date) -> list[Job]:
    """A rule's constant input may name one job; the daily rule's event is the scan, plus the
    weekly insights on Mondays."""
    named = event.get("job")
    if named in ("scan", "weekly"):
        return ["scan"] if named == "scan" else ["weekly"]
    return ["scan", "weekly"] if today.weekday() == 0 else ["scan"]


def run_job(service: AnomalyService, message: OrganizationJob) -> dict[str, Any]:
    if message.job == "weekly":
        return service.weekly(message.organization_id, message.week_start)
    return service.scan(message.organization_id).as_dict()


def fan_out(service: AnomalyService, event: Mapping[str, Any]) -> dict[str, Any]:
    jobs = jobs_of(event, service.clock().date())
    if not feature_enabled(service.settings, "anomalies"):
        return {"jobs": jobs, "skipped": "AI_ANOMALIES_ENABLED=false"}
    organizations = list_organization_ids(service.runtime.db)
    messages = [OrganizationJob(job=job, organization_id=org) for org in organizations for job in jobs]
    queue_url = service.settings.anomaly_scan_queue_url
    if queue_url:
        return {"jobs": jobs, "organizations": len(organizations), **_enqueue(service, queue_url, messages)}
    done, failed = 0, []
    for message in messages:
        try:
            run_job(service, message)
            done += 1
        except Exception as error:  # one organization's failure must not stop the others
            logger.exception("anomalies %s failed for organization %s", message.job, message.organization_id)
            failed.append(
                {
                    "organization_id": str(message.organization_id),
                    "job": message.job,
                    "error": f"{type(error).__name__}: {error}",
                }
            )
    return {"jobs": jobs, "organizations": len(organizations), "done": done, "failed": failed}


def _enqueue(service: AnomalyService, queue_url: str, messages: list[OrganizationJob]) -> dict[str, Any]:
    """One message per organization and job, ten per SendMessageBatch call; what SQS refused is
    retried once, then reported (the schedule's next run covers it)."""
    from okyaku.aws import boto3_client

    sqs = boto3_client("sqs", endpoint_url=service.settings.aws_endpoint_url, region=service.settings.aws_region)
    bodies = {f"{m.job}:{m.organization_id}": m.model_dump_json() for m in messages}
    pending = list(bodies)
    for _attempt in range(2):
        refused: list[str] = []
        for start in range(0, len(pending), 10):
            chunk = pending[start : start + 10]
            entries = [{"Id": str(i), "MessageBody": bodies[org]} for i, org in enumerate(chunk)]
            response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            refused += [chunk[int(f["Id"])] for f in response.get("Failed", [])]
        pending = refused
        if not pending:
            break
    if pending:
        logger.error("could not queue %d anomalies messages", len(pending))
    return {"queued": len(messages) - len(pending), "not_queued": pending}


def make_record_handler(service: AnomalyService) -> Any:
    def on_record(record: SQSRecord) -> dict[str, Any]:
        message = OrganizationJob.model_validate_json(record.body)
        if not feature_enabled(service.settings, "anomalies"):
            return {"skipped": "AI_ANOMALIES_ENABLED=false"}
        outcome = run_job(service, message)
        emails = outcome.get("emails") or {}
        if emails.get("failed"):
            raise EmailDeliveryFailed(
                f"{emails['failed']} e-mail(s) for organization {message.organization_id} failed; they stay pending",
                details=emails,
            )
        return outcome

    return on_record


def make_schedule_handler(service: AnomalyService) -> Any:
    def on_schedule(event: Mapping[str, Any], _context: Any) -> dict[str, Any]:
        return fan_out(service, event)

    return on_schedule
