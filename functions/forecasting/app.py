"""forecasting: deal and pipeline forecasts (HTTP), nightly retrain + rescore of deals (schedule),
rescoring of deals on record changes (SQS)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.entry import function_handler
    from okyaku.predictions.api import create_forecasting_app, prediction_service
    from okyaku.predictions.service import FORECASTING_TARGETS
    from okyaku.predictions.triggers import PredictionTriggers

    service = prediction_service()
    triggers = PredictionTriggers(service, FORECASTING_TARGETS)
    app = create_forecasting_app(service=service)
    handler = function_handler(
        name="forecasting", http=app, on_record=triggers.on_change_record, on_schedule=triggers.on_schedule
    )
