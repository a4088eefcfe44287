"""scoring: lead scores and churn risk (HTTP), nightly retrain + rescore (schedule), rescoring on
record changes (SQS)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.entry import function_handler
    from okyaku.predictions.api import create_scoring_app, prediction_service
    from okyaku.predictions.service import SCORING_TARGETS
    from okyaku.predictions.triggers import PredictionTriggers

    service = prediction_service()
    triggers = PredictionTriggers(service, SCORING_TARGETS)
    app = create_scoring_app(service=service)
    handler = function_handler(
        name="scoring", http=app, on_record=triggers.on_change_record, on_schedule=triggers.on_schedule
    )
