"""The anomalies function's non-HTTP triggers.

- ``on_schedule``: the daily scan and the weekly insights rules fan out one SQS message per
  organization onto the function's own queue (``ANOMALY_SCAN_QUEUE_URL``); without a queue
  (local runs) each organization is handled in-process, one failing organization logged and
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
WEEKLY_RULE_SUFFIX = "WeeklyInsights"


class OrganizationJob(BaseModel):
    """The body of a message on the anomalies queue."""

    job: Job
    organization_id: uuid.UUID
    week_start: date | None = None


class EmailDeliveryFailed(DependencyUnavailable):
    code = "email_delivery_failed"


def job_of(event: Mapping[str, Any]) -> Job:
    """The weekly rule's events name it in ``resources``; a rule's constant input may say ``job``."""
    named = event.get("job")
    if named in ("scan", "weekly"):
        return named  # type: ignore[return-value]
    resources = event.get("resources") or []
    return "weekly" if any(str(r).split("/")[-1].find(WEEKLY_RULE_SUFFIX) >= 0 for r in resources) else "scan"


def run_job(service: AnomalyService, message: OrganizationJob) -> dict[str, Any]:
    if message.job == "weekly":
        return service.weekly(message.organization_id, message.week_start)
    return service.scan(message.organization_id).as_dict()


def fan_out(service: AnomalyService, event: Mapping[str, Any]) -> dict[str, Any]:
    job = job_of(event)
    if not feature_enabled(service.settings, "anomalies"):
        return {"job": job, "skipped": "AI_ANOMALIES_ENABLED=false"}
    organizations = list_organization_ids(service.runtime.db)
    queue_url = service.settings.anomaly_scan_queue_url
    if queue_url:
        return {"job": job, "organizations": len(organizations), **_enqueue(service, queue_url, job, organizations)}
    done, failed = 0, []
    for organization_id in organizations:
        try:
            run_job(service, OrganizationJob(job=job, organization_id=organization_id))
            done += 1
        except Exception as error:  # one organization's failure must not stop the others
            logger.exception("anomalies %s failed for organization %s", job, organization_id)
            failed.append({"organization_id": str(organization_id), "error": f"{type(error).__name__}: {error}"})
    return {"job": job, "organizations": len(organizations), "done": done, "failed": failed}


def _enqueue(service: AnomalyService, queue_url: str, job: Job, organizations: list[uuid.UUID]) -> dict[str, Any]:
    """One message per organization, ten per SendMessageBatch call; what SQS refused is retried
    once, then reported (the schedule's next run covers it)."""
    from okyaku.aws import boto3_client

    sqs = boto3_client("sqs", endpoint_url=service.settings.aws_endpoint_url, region=service.settings.aws_region)
    bodies = {str(org): OrganizationJob(job=job, organization_id=org).model_dump_json() for org in organizations}
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
        logger.error("could not queue the anomalies %s for %d organizations", job, len(pending))
    return {"queued": len(organizations) - len(pending), "not_queued": pending}


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
