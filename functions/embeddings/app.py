"""embeddings: change events → embeddings (SQS), scheduled backfill (EventBridge), /api/v1/ai/search (HTTP)."""

from typing import Any

from okyaku.coldstart import built_once

with built_once():
    from mangum import Mangum

    from okyaku.embeddings.function import EmbeddingsFunction, is_scheduled_event, is_sqs_event

    function = EmbeddingsFunction()
    app = function.app
    http_handler = Mangum(app, lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_sqs_event(event):
        return function.consume(event, context)
    if is_scheduled_event(event):
        return function.scheduled_backfill(event, context)
    return http_handler(event, context)  # type: ignore[arg-type]
