"""Property-based fuzzing of every HTTP function's OpenAPI (schemathesis): whatever a client
sends, the answer is never a 5xx, it matches the documented response schema, and every error
has the project's shape.

Seeded (derandomized) and bounded for `make test`: FUZZ_EXAMPLES cases per function and mode
(default 60); `make fuzz` runs many more."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from okyaku.agents.api import create_agents_app
from okyaku.anomalies.api import create_anomalies_app
from okyaku.anomalies.service import AnomalyService
from okyaku.chat.api import create_chat_app
from okyaku.chat.service import ChatService
from okyaku.content.api import create_content_app
from okyaku.conversation.api import create_conversation_app
from okyaku.conversation.service import ConversationService
from okyaku.crm.api import create_crm_app
from okyaku.email.api import create_emails_app
from okyaku.email.service import EmailService
from okyaku.embeddings.api import create_search_app
from okyaku.mailboxes.api import create_mailboxes_app
from okyaku.mailboxes.service import MailboxService
from okyaku.mcp.api import create_mcp_app
from okyaku.mcp.service import McpTools
from okyaku.predictions.api import create_forecasting_app, create_scoring_app
from okyaku.recommendations.api import create_recommendations_app
from okyaku.recommendations.service import RecommendationService
from okyaku.runtime import Runtime
from tests.support.hashing_embedder import HashingEmbedder

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))


class _NoWorker:
    def dispatch(self, job: Any) -> None:
        return None


# The function -> its app, built over the test database (the LLM at a port where nothing listens:
# the AI routes must answer 503 with the error shape, not fail).
APPS: dict[str, Callable[[Any, Any], FastAPI]] = {
    "crm_api": lambda runtime, gateway: create_crm_app(runtime),
    "content": lambda runtime, gateway: create_content_app(runtime, gateway),
    "embeddings": lambda runtime, gateway: create_search_app(runtime, embedder=HashingEmbedder()),
    "scoring": lambda runtime, gateway: create_scoring_app(runtime, writer=None),
    "forecasting": lambda runtime, gateway: create_forecasting_app(runtime, writer=None),
    "agents": lambda runtime, gateway: create_agents_app(runtime, gateway),
    "anomalies": lambda runtime, gateway: create_anomalies_app(AnomalyService(runtime, gateway)),
    "chat": lambda runtime, gateway: create_chat_app(ChatService(runtime, gateway)),
    "conversation": lambda runtime, gateway: create_conversation_app(ConversationService(runtime, gateway)),
    "recommendations": lambda runtime, gateway: create_recommendations_app(RecommendationService(runtime)),
    "mcp": lambda runtime, gateway: create_mcp_app(McpTools(runtime, gateway)),
    # queued e-mails are announced to nobody here: the fuzz is about the HTTP answers
    "emails": lambda runtime, gateway: create_emails_app(EmailService(runtime, dispatcher=_NoWorker())),
    "mailboxes": lambda runtime, gateway: create_mailboxes_app(MailboxService(with_mailbox_key(runtime))),
}


def with_mailbox_key(runtime: Runtime) -> Runtime:
    """The runtime with a MAILBOX_ENCRYPTION_KEY: connecting a mailbox then stores it (without a
    key every connection is the documented 503, which would hide the rest from the fuzzer)."""
    from cryptography.fernet import Fernet
    from pydantic import SecretStr

    settings = runtime.settings.model_copy(update={"mailbox_encryption_key": SecretStr(Fernet.generate_key().decode())})
    return Runtime(settings, db=runtime.db, publisher=runtime.publisher)


# What a client of each function always sends besides its key (MCP clients accept JSON).
HEADERS: dict[str, dict[str, str]] = {"mcp": {"Accept": "application/json, text/event-stream"}}


# The LLM is down on purpose here, and no imports bucket is configured: saying so (503 with one of
# these codes) is the right answer.
LLM_DOWN_CODES = frozenset({"llm_unavailable", "llm_circuit_open", "uploads_unavailable"})


def no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """No 5xx, except the 503 that says the (deliberately absent) LLM or bucket is unavailable."""
    if response.status_code < 500:
        return None
    try:
        code = (response.json().get("error") or {}).get("code")
    except ValueError:  # not JSON at all
        code = None
    assert response.status_code == 503 and code in LLM_DOWN_CODES, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    return True


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx body is {"error": {"code", "message", "details"}}; on /mcp, a message that is
    not JSON-RPC may instead get the JSON-RPC error the protocol requires (documented as such)."""
    if response.status_code < 400:
        return None
    body = response.json()
    if case.path == "/mcp" and response.status_code == 400 and body.get("jsonrpc") == "2.0":
        assert isinstance(body["error"]["code"], int) and isinstance(body["error"]["message"], str)
        return True
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: not the error shape: {response.text[:300]}"
    )
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return True


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize("function", sorted(APPS))
def test_no_input_gives_a_5xx_or_breaks_the_documented_shape(
    function, mode, runtime, tenant, make_gateway, dead_llm_url
):
    app = APPS[function](runtime, make_gateway(dead_llm_url))
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)
    auth = {"Authorization": f"Bearer {tenant.org.api_key}", **HEADERS.get(function, {})}
    checks = [no_server_error, response_schema_conformance, status_code_conformance, error_shape]

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=schema.as_strategy(generation_mode=mode, headers=auth))
    def fuzz(case: Any) -> None:
        response = case.call()
        case.validate_response(response, checks=checks)

    fuzz()
