"""The MCP server over stdio, for desktop clients that start a local process
(``okyaku mcp --org-key KEY``). The key is checked again at every request, so revoking it (or
deactivating its user) stops the process's next call, as over HTTP."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread

from okyaku.mcp.service import Caller, McpTools
from okyaku.tenancy import authenticate


def serve_stdio(tools: McpTools, api_key: str) -> None:
    from mcp.server.stdio import stdio_server

    from okyaku.mcp.server import build_server, client_name

    async def caller_of(ctx: Any) -> Caller:
        principal = await anyio.to_thread.run_sync(authenticate, tools.runtime.db, f"Bearer {api_key}")
        return Caller(principal, client_name(ctx, "stdio client"))

    server = build_server(tools, caller_of)

    async def main() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(main)
