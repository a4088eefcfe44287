"""The official MCP SDK's low-level ``Server`` over :class:`okyaku.mcp.service.McpTools`.

Tool failures (bad arguments, a record not found, a feature switched off, the LLM down) are tool
results with ``isError`` and the project's error body, so the calling model sees why and can
correct itself; an unknown tool or resource is a JSON-RPC error; nothing becomes an HTTP 500.
Who calls is resolved per request by ``caller_of`` (the HTTP layer's API-key check, or the stdio
command's key), so a revoked key stops working at the next request."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError

from okyaku.errors import NotFound, OkyakuError, public_error
from okyaku.mcp.service import Caller, McpTools, UnknownTool, parse_record_uri, record_uri
from okyaku.mcp.tools import APPROVAL_NOTE, DATA_NOT_INSTRUCTIONS, TOOLS

logger = logging.getLogger(__name__)

SERVER_NAME = "okyaku"
SERVER_VERSION = "0.1.0"
INSTRUCTIONS = (
    "Okyaku is the organization's CRM. Search and read records, ask questions of its data, see lead "
    "scores, deal forecasts and recommended next actions. " + APPROVAL_NOTE + " " + DATA_NOT_INSTRUCTIONS
)
RESOURCE_NOT_FOUND = -32002  # the code the MCP specification gives a resource that does not exist
Context = ServerRequestContext[Any, Any]
CallerOf = Callable[[Context], Awaitable[Caller]]


def tool_definitions() -> list[types.Tool]:
    return [
        types.Tool(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            input_schema=spec.input_schema(),
            annotations=types.ToolAnnotations(
                title=spec.title,
                read_only_hint=spec.read_only,
                destructive_hint=spec.destructive,
                idempotent_hint=spec.idempotent,
                open_world_hint=False,
            ),
        )
        for spec in TOOLS
    ]


def client_name(ctx: Context, fallback: str | None) -> str:
    """The client's own name when it sent one (stdio, and every 2026-era request carries it); a
    stateless HTTP request of the handshake era does not, so its User-Agent stands in."""
    params = ctx.session.client_params
    if params is not None:
        info = params.client_info
        return f"{info.name} {info.version}".strip()
    return (fallback or "unknown client")[:200]


def build_server(tools: McpTools, resolve_caller: CallerOf) -> Server[Any]:
    definitions = tool_definitions()

    async def caller_of(ctx: Context) -> Caller:
        try:
            return await resolve_caller(ctx)
        except OkyakuError as error:  # over stdio, a key revoked since the start: refuse this request
            raise MCPError(types.INVALID_REQUEST, error.message, data=error.to_body()["error"]) from error

    async def list_tools(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        await caller_of(ctx)
        return types.ListToolsResult(tools=definitions)

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        caller = await caller_of(ctx)
        try:
            result = await anyio.to_thread.run_sync(tools.call, caller, params.name, params.arguments)
        except UnknownTool as error:
            raise MCPError(types.INVALID_PARAMS, error.message, data=error.to_body()["error"]) from error
        except OkyakuError as error:
            logger.info("tool %s refused: %s", params.name, error.code)
            return _tool_error(error)
        except Exception as error:
            logger.exception("tool %s failed", params.name)
            raise MCPError(types.INTERNAL_ERROR, public_error(error)["message"]) from error
        return types.CallToolResult(
            content=[types.TextContent(text=json.dumps(result, ensure_ascii=False, default=str))],
            structured_content=result,
        )

    async def list_resources(ctx: Context, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        caller = await caller_of(ctx)
        records = await anyio.to_thread.run_sync(tools.recent_records, caller)
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    uri=record_uri(r["type"], r["id"]),
                    name=f"{r['type']}: {r['name']}",
                    mime_type="application/json",
                )
                for r in records
            ]
        )

    async def list_templates(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        await caller_of(ctx)
        template = types.ResourceTemplate(
            uri_template="okyaku://{type}/{id}",
            name="record",
            title="A CRM record",
            description="A company, contact, deal, activity or task (type) by id, with its key relations.",
            mime_type="application/json",
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def read_resource(ctx: Context, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        caller = await caller_of(ctx)
        try:
            entity_type, entity_id = parse_record_uri(params.uri)
            record = await anyio.to_thread.run_sync(tools.read_record, caller, entity_type, entity_id)
        except NotFound as error:
            raise MCPError(RESOURCE_NOT_FOUND, error.message, data={"uri": params.uri}) from error
        except OkyakuError as error:
            raise MCPError(types.INVALID_PARAMS, error.message, data=error.to_body()["error"]) from error
        text = json.dumps(record, ensure_ascii=False, default=str)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=params.uri, mime_type="application/json", text=text)]
        )

    return Server(
        SERVER_NAME,
        version=SERVER_VERSION,
        title="Okyaku CRM",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )


def _tool_error(error: OkyakuError) -> types.CallToolResult:
    body = error.to_body()
    return types.CallToolResult(
        content=[types.TextContent(text=f"{error.message} ({error.code})\n{json.dumps(body, default=str)}")],
        structured_content=body,
        is_error=True,
    )
