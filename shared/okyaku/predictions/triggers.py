"""The non-HTTP triggers of the scoring and forecasting functions: rescoring on record changes
(SQS) and the nightly retrain + rescore (schedule). Each function builds one PredictionService
and hands it to these and to its HTTP app."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from okyaku.events import decode_change_event
from okyaku.features import feature_enabled
from okyaku.predictions.service import ModelTarget, PredictionService

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = logging.getLogger(__name__)


class PredictionTriggers:
    def __init__(self, service: PredictionService, targets: Sequence[ModelTarget]) -> None:
        self.service = service
        self.targets = tuple(targets)

    def on_change_record(self, record: SQSRecord) -> None:
        """Rescore what one change event touches. A record that cannot be parsed fails too: it is
        kept for inspection (retried, then dead-lettered) rather than dropped."""
        change = decode_change_event(record.body)
        if not feature_enabled(self.service.runtime.settings, "predictions"):
            return
        outcome = self.service.on_change(change, self.targets)
        # Every CRM write lands here: per-event detail is debug-level; failures are logged by the batch.
        logger.debug("change %s (%s %s): %s", change.event_id, change.entity_type, change.operation, outcome)

    def on_schedule(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        if not feature_enabled(self.service.runtime.settings, "predictions"):
            return {"skipped": "AI_PREDICTIONS_ENABLED=false"}
        report = self.service.nightly(self.targets)
        logger.info("nightly retrain and rescore: %s", report.as_dict())
        return report.as_dict()
