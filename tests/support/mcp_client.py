"""An MCP server on a loopback port (uvicorn in a thread) and the SDK's own client to talk to it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """``app`` served on 127.0.0.1; yields the ``/mcp`` URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:  # a deadline against hangs, not a timing assertion
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@asynccontextmanager
async def connect(
    url: str, api_key: str | None, *, mode: str = "legacy", name: str = "pytest-client"
) -> AsyncIterator[Client]:
    """The SDK's client over Streamable HTTP with ``Authorization: Bearer <api_key>``."""
    import mcp_types

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with create_mcp_http_client(headers=headers) as http:
        transport = streamable_http_client(url, http_client=http, terminate_on_close=False)
        info = mcp_types.Implementation(name=name, version="1.0")
        async with Client(transport, mode=mode, client_info=info) as client:
            yield client
