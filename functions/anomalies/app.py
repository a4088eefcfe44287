"""anomalies: anomalies, weekly insights and notifications (HTTP); the daily scan and weekly
insights schedules fan out one message per organization onto the function's own queue (SQS)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.anomalies.api import create_anomalies_app
    from okyaku.anomalies.service import AnomalyService
    from okyaku.anomalies.triggers import make_record_handler, make_schedule_handler
    from okyaku.entry import function_handler
    from okyaku.llm.gateway import LLMGateway
    from okyaku.runtime import Runtime

    runtime = Runtime()
    service = AnomalyService(runtime, LLMGateway.from_settings(runtime.settings))
    app = create_anomalies_app(service)
    handler = function_handler(
        name="anomalies",
        http=app,
        on_record=make_record_handler(service),
        on_schedule=make_schedule_handler(service),
    )
