"""The deployed handler (functions/agents/app.py) as Lambda calls it, configured by environment
variables: HTTP through Mangum queues the run on SQS (moto's server), and the same handler, given
the queue's messages as an SQS event, runs it. A bad message is reported in batchItemFailures."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.fixtures import FAST
from tests.support.openai_server import Reply

APP = Path(__file__).resolve().parents[2] / "functions" / "agents" / "app.py"


@pytest.fixture
def queue_url(sqs) -> str:
    return str(sqs.create_queue(QueueName=f"agent-runs-{uuid.uuid4().hex[:8]}")["QueueUrl"])


@pytest.fixture
def handler_module(pg, monkeypatch, openai_server, moto_endpoint, queue_url):
    from okyaku.config import get_settings

    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    monkeypatch.setenv("OLLAMA_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("AGENT_RUNS_QUEUE_URL", queue_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("CHANGE_EVENTS_QUEUE_URL", raising=False)
    for name, value in FAST.items():
        monkeypatch.setenv(name.upper(), str(value))
    get_settings.cache_clear()
    spec = importlib.util.spec_from_file_location("agents_function_app", APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    module.agents.llm.close()
    module.agents.runtime.db.dispose()
    get_settings.cache_clear()


def http_event(method: str, path: str, api_key: str, body: Any = None) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "authorization": f"Bearer {api_key}",
            "content-type": "application/json",
            "host": "api.okyaku.example",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "okyaku",
            "domainName": "api.okyaku.example",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "pytest",
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "time": "26/Nov/2026:09:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1764147600000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1764147600001",
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(m["Body"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def test_http_queues_the_run_and_the_queue_worker_runs_it(handler_module, tenant, openai_server, sqs, queue_url):
    openai_server.script(
        Reply.tool_call("analyze", {"entity_type": "contact"}),
        Reply.text("You have no contacts yet."),
    )
    api_key = tenant.org.api_key
    response = handler_module.handler(
        http_event("POST", "/api/v1/ai/agents/data_analyst/run", api_key, {"task": "How many contacts?"}), None
    )
    assert response["statusCode"] == 202, response
    execution_id = json.loads(response["body"])["execution_id"]
    assert openai_server.requests_to("chat") == []  # nothing ran in the HTTP invocation

    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"]) for m in received] == [
        {"organization_id": str(tenant.id), "execution_id": execution_id}
    ]
    arn = "arn:aws:sqs:us-east-1:123456789012:agent-runs"
    bad = {"MessageId": "bad-1", "ReceiptHandle": "r", "Body": '{"execution_id": "nope"}'}
    result = handler_module.handler(sqs_event([*received, bad], arn), None)
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}

    shown = handler_module.handler(http_event("GET", f"/api/v1/ai/agents/executions/{execution_id}", api_key), None)
    execution = json.loads(shown["body"])
    assert (execution["status"], execution["answer"]) == ("completed", "You have no contacts yet.")
    assert execution["steps"][1]["result"]["data"] == {
        "plan": {"entity_type": "contact", "metric": "count", "field": None, "group_by": None, "filters": {}},
        "count": 0,
        "value": 0,
    }
    # Delivered again (at least once): the run is not repeated.
    assert handler_module.handler(sqs_event(received, arn), None) == {"batchItemFailures": []}
    assert len(openai_server.requests_to("chat")) == 2
