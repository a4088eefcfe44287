"""mcp: the CRM's tools for external agents over the Model Context Protocol (HTTP POST /mcp,
Streamable HTTP, stateless); every write is a proposal in the approval queue."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.entry import function_handler
    from okyaku.llm.gateway import LLMGateway
    from okyaku.mcp.api import create_mcp_app
    from okyaku.mcp.service import McpTools
    from okyaku.runtime import Runtime

    runtime = Runtime()
    tools = McpTools(runtime, LLMGateway.from_settings(runtime.settings))
    app = create_mcp_app(tools)
    handler = function_handler(name="mcp", http=app)
