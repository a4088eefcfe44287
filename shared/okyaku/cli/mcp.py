"""``okyaku mcp``: the MCP server over stdio for desktop clients that start a local process::

    okyaku mcp --org-key oky_...        # or, after `okyaku dev` once, the demo organization's key

The database is DATABASE_URL, else the embedded database of ``okyaku dev``. stdout carries the
protocol; logs go to stderr."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from okyaku.cli.local_db import add_data_dir_argument, database_url, demo_api_key
from okyaku.config import get_settings
from okyaku.errors import BadRequest


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "mcp",
        help="serve the CRM's MCP tools over stdio (for desktop MCP clients)",
        description="Serve Okyaku as an MCP server over stdin/stdout, as the organization of --org-key.",
    )
    parser.add_argument("--org-key", metavar="KEY", help="an API key of the organization (default: the demo's)")
    add_data_dir_argument(parser)
    parser.set_defaults(func=run_mcp)


def run_mcp(args: argparse.Namespace) -> int:
    from okyaku.llm import LLMGateway
    from okyaku.mcp.service import McpTools
    from okyaku.mcp.stdio import serve_stdio
    from okyaku.runtime import Runtime
    from okyaku.tenancy import authenticate

    logging.basicConfig(stream=sys.stderr, force=True, level=logging.WARNING)
    database_url(args.data_dir)
    key = args.org_key or demo_api_key(args.data_dir)
    if not key:
        raise BadRequest("give --org-key (or run `okyaku dev` once, which saves the demo organization's key)")
    runtime = Runtime(get_settings())
    gateway = LLMGateway.from_settings(runtime.settings)
    try:
        authenticate(runtime.db, f"Bearer {key}")  # a wrong key fails here, before a client connects
        serve_stdio(McpTools(runtime, gateway), key)
    finally:
        gateway.close()
        runtime.db.dispose()
    return 0
