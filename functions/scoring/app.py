"""scoring: lead scores and churn risk (HTTP), nightly retrain + rescore (schedule), rescoring on
record changes (SQS)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.predictions.api import create_scoring_app
    from okyaku.predictions.service import SCORING_TARGETS
    from okyaku.predictions.triggers import make_handler

    app = create_scoring_app()
    handler = make_handler(app, SCORING_TARGETS)
