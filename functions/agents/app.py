"""agents: /api/v1/ai/agents and /api/v1/ai/approvals (HTTP), and the agent-run queue (SQS)."""

from typing import Any

from okyaku.coldstart import built_once

with built_once():
    from mangum import Mangum

    from okyaku.agents.function import AgentsFunction, is_sqs_event

    function = AgentsFunction()
    app = function.app
    http_handler = Mangum(app, lifespan="off")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_sqs_event(event):
        return function.consume(event, context)
    return http_handler(event, context)  # type: ignore[arg-type]
