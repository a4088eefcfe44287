"""forecasting: deal and pipeline forecasts (HTTP), nightly retrain + rescore of deals (schedule),
rescoring of deals on record changes (SQS)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.predictions.api import create_forecasting_app
    from okyaku.predictions.service import FORECASTING_TARGETS
    from okyaku.predictions.triggers import make_handler

    app = create_forecasting_app()
    handler = make_handler(app, FORECASTING_TARGETS)
