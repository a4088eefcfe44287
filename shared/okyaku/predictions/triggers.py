"""The non-HTTP triggers of the scoring and forecasting functions: rescoring on record changes
(SQS) and the nightly retrain + rescore (schedule). Each function builds one PredictionService
and hands it to these and to its HTTP app.

The nightly schedule fans out one message per organization onto the function's jobs queue
(PREDICTION_JOBS_QUEUE_URL; okyaku.fanout), so a run past the timeout cannot starve the
organizations after it and each is retried, then dead-lettered, on its own. That queue's
messages come to ``on_change_record`` too, told apart by their ``job`` field."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from okyaku.errors import DependencyUnavailable
from okyaku.events import decode_change_event
from okyaku.fanout import enqueue_per_organization, job_message
from okyaku.features import feature_enabled
from okyaku.predictions.service import ModelTarget, PredictionService

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = logging.getLogger(__name__)


class NightlyJob(BaseModel):
    """One organization's nightly retrain + rescore: a message on the function's jobs queue."""

    job: Literal["nightly"] = "nightly"
    organization_id: uuid.UUID


class NightlyFailed(DependencyUnavailable):
    code = "nightly_failed"


class PredictionTriggers:
    def __init__(self, service: PredictionService, targets: Sequence[ModelTarget]) -> None:
        self.service = service
        self.targets = tuple(targets)

    def on_change_record(self, record: SQSRecord) -> None:
        """Rescore what one change event touches. A record that cannot be parsed fails too: it is
        kept for inspection (retried, then dead-lettered) rather than dropped."""
        job = job_message(record.body, NightlyJob)
        if job is not None:
            self.run_nightly_job(job)
            return
        change = decode_change_event(record.body)
        if not feature_enabled(self.service.runtime.settings, "predictions"):
            return
        outcome = self.service.on_change(change, self.targets)
        # Every CRM write lands here: per-event detail is debug-level; failures are logged by the batch.
        logger.debug("change %s (%s %s): %s", change.event_id, change.entity_type, change.operation, outcome)

    def run_nightly_job(self, job: NightlyJob) -> dict[str, Any]:
        """One organization's retrain + rescore; raises (the message is retried) if a target failed."""
        if not feature_enabled(self.service.runtime.settings, "predictions"):
            return {"skipped": "AI_PREDICTIONS_ENABLED=false"}
        report = self.service.nightly_for(job.organization_id, self.targets)
        if report.errors:
            raise NightlyFailed(f"nightly run of organization {job.organization_id} failed", details=report.errors)
        logger.info("nightly retrain and rescore of %s: %s", job.organization_id, report.as_dict())
        return report.as_dict()

    def on_schedule(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        settings = self.service.runtime.settings
        if not feature_enabled(settings, "predictions"):
            return {"skipped": "AI_PREDICTIONS_ENABLED=false"}
        if settings.prediction_jobs_queue_url:
            return enqueue_per_organization(
                settings,
                self.service.runtime.db,
                settings.prediction_jobs_queue_url,
                lambda organization_id: NightlyJob(organization_id=organization_id),
                label="nightly",
            )
        report = self.service.nightly(self.targets)  # no queue (local runs): every organization in turn
        logger.info("nightly retrain and rescore: %s", report.as_dict())
        return report.as_dict()
