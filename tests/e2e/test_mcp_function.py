"""The deployed ``mcp`` function (functions/mcp/app.py, configured by environment variables):
served by the local runner from a template (HTTP API v2 events, as API Gateway sends) to the
SDK's own client, and called directly as Lambda calls it with HTTP API v2 events."""

from __future__ import annotations

import importlib.util
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from okyaku.config import get_settings
from okyaku.lambda_events import build_http_event
from okyaku.local.postgres import LocalDatabase
from okyaku.local.runner import LocalRunner
from okyaku.tenancy import create_organization
from tests.conftest import Tenant
from tests.support.fixtures import FAST
from tests.support.mcp_client import connect

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = ROOT / "functions" / "mcp"


@pytest.fixture
def function_env(pg: LocalDatabase, monkeypatch: pytest.MonkeyPatch, dead_llm_url: str) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    monkeypatch.setenv("OLLAMA_BASE_URL", dead_llm_url)
    monkeypatch.delenv("CHANGE_EVENTS_QUEUE_URL", raising=False)
    for name, value in FAST.items():
        monkeypatch.setenv(name.upper(), str(value))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_client_reads_and_proposes_through_the_local_runner(
    function_env: None, tmp_path: Path, tenant: Tenant, pipeline: dict[str, Any]
) -> None:
    contact = tenant.client.post(
        "/api/v1/contacts", json={"first_name": "Ada", "last_name": "Byron", "email": "ada@analytical.example"}
    ).json()
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Resources:\n"
        f"  McpFunction:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: {FUNCTION}\n"
        "      Handler: app.handler\n      Runtime: python3.11\n      Events:\n"
        "        Mcp: {Type: HttpApi, Properties: {Path: /mcp, Method: ANY}}\n"
    )

    async def session(url: str) -> None:
        async with connect(url, tenant.org.api_key, mode="auto", name="Runner Client") as client:
            assert "get_record" in {tool.name for tool in (await client.list_tools()).tools}
            read = await client.call_tool("get_record", {"type": "contact", "id": contact["id"]})
            assert read.is_error is False and read.structured_content["record"]["last_name"] == "Byron"
            proposed = await client.call_tool(
                "propose_change",
                {
                    "type": "contact",
                    "id": contact["id"],
                    "changes": {"job_title": "Analyst"},
                    "reasoning": "She said so.",
                },
            )
            assert proposed.is_error is False, proposed.structured_content
            assert proposed.structured_content["proposal"]["client"] == "Runner Client 1.0"

    with LocalRunner(template, port=0, apply_environment=False) as runner:
        anyio.run(session, f"{runner.url}/mcp")
    assert tenant.client.get(f"/api/v1/contacts/{contact['id']}").json().get("job_title") is None


@pytest.fixture
def handler(function_env: None) -> Iterator[Any]:
    spec = importlib.util.spec_from_file_location("mcp_function_app", FUNCTION / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module.handler
    module.runtime.db.dispose()


def mcp_event(message: dict[str, Any], api_key: str | None) -> dict[str, Any]:
    headers = [("host", "api.okyaku.example"), ("content-type", "application/json")]
    headers.append(("accept", "application/json, text/event-stream"))
    if api_key:
        headers.append(("authorization", f"Bearer {api_key}"))
    return build_http_event(
        "ANY /mcp",
        {},
        method="POST",
        raw_path="/mcp",
        raw_query="",
        headers=headers,
        body=json.dumps(message).encode(),
        source_ip="198.51.100.7",
    )


def test_the_lambda_handler_answers_http_api_events(handler: Any, db: Any) -> None:
    org = create_organization(db, f"Lambda {uuid.uuid4().hex[:6]}", "admin@lambda.example")
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "curl", "version": "8"}},
    }
    response = handler(mcp_event(initialize, org.api_key), None)
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"])["result"]["serverInfo"]["name"] == "okyaku"

    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_approvals", "arguments": {}}}
    response = handler(mcp_event(call, org.api_key), None)
    result = json.loads(response["body"])["result"]
    assert response["statusCode"] == 200 and result["isError"] is False
    assert result["structuredContent"] == {"approvals": [], "more": False}

    bad = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "get_record", "arguments": {}}}
    result = json.loads(handler(mcp_event(bad, org.api_key), None)["body"])["result"]
    assert result["isError"] is True and result["structuredContent"]["error"]["code"] == "validation_error"

    refused = handler(mcp_event(call, None), None)
    assert refused["statusCode"] == 401
    assert json.loads(refused["body"])["error"]["code"] == "unauthorized"


def test_okyaku_mcp_serves_a_desktop_client_over_stdio(pg: LocalDatabase, tenant: Tenant, db: Any) -> None:
    import os
    import sys

    from mcp import Client, StdioServerParameters
    from mcp.shared.exceptions import MCPError

    from okyaku.tenancy import issue_api_key, revoke_api_key

    contact = tenant.client.post("/api/v1/contacts", json={"first_name": "Grace", "email": "grace@navy.example"}).json()
    key, info = issue_api_key(db, tenant.id, "desktop", tenant.org.user_id)
    command = "import sys; from okyaku.cli import main; sys.exit(main())"
    environment = {
        **os.environ,
        "DATABASE_URL": pg.app_url,
        "OLLAMA_BASE_URL": "http://127.0.0.1:9/v1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "shared"), str(ROOT)]),
    }
    server = StdioServerParameters(
        command=sys.executable, args=["-c", command, "mcp", "--org-key", key], env=environment
    )

    async def session() -> None:
        async with Client(server, mode="legacy") as client:
            assert client.server_info is not None and client.server_info.name == "okyaku"
            read = await client.call_tool("get_record", {"type": "contact", "id": contact["id"]})
            assert read.is_error is False and read.structured_content["record"]["first_name"] == "Grace"
            revoke_api_key(db, tenant.id, info.id)
            with pytest.raises(MCPError) as refused:
                await client.call_tool("get_record", {"type": "contact", "id": contact["id"]})
            assert "revoked" in refused.value.message

    anyio.run(session)
