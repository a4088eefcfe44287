"""agents: /api/v1/ai/agents and /api/v1/ai/approvals (HTTP), and the agent-run queue (SQS)."""

import gc

# Cold start: what is built below lives as long as the process, so the cyclic collector only burns
# time scanning it while it is being built (≈ 10% of the import); pause it, then freeze the result.
gc.disable()

from typing import Any  # noqa: E402

from mangum import Mangum  # noqa: E402

from okyaku.agents.function import AgentsFunction, is_sqs_event  # noqa: E402

function = AgentsFunction()
app = function.app
http_handler = Mangum(app, lifespan="off")
gc.freeze()
gc.enable()


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_sqs_event(event):
        return function.consume(event, context)
    return http_handler(event, context)  # type: ignore[arg-type]
