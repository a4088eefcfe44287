"""agents: /api/v1/ai/agents and /api/v1/ai/approvals (HTTP), and the agent-run queue (SQS)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.agents.api import agents_service, create_agents_app
    from okyaku.entry import function_handler

    agents = agents_service()
    app = create_agents_app(service=agents)
    handler = function_handler(name="agents", http=app, on_record=agents.run_record)
