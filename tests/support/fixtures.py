"""Fixtures for LLM tests: a scripted OpenAI-compatible server and gateways pointed at it.

Registered from tests/conftest.py (``pytest_plugins``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from okyaku.config import Settings
from okyaku.llm import FeatureFlags, LLMConfig, LLMGateway
from tests.support.llama_server import TOOLS_TEMPLATE, LlamaServer, find_install
from tests.support.openai_server import ScriptedOpenAIServer, closed_port_url

# Small timeouts and backoff so failure paths run in milliseconds.
FAST = {
    "llm_timeout_s": 2.0,
    "llm_connect_timeout_s": 0.5,
    "llm_health_timeout_s": 1.0,
    "llm_max_retries": 2,
    "llm_backoff_base_s": 0.01,
    "llm_backoff_max_s": 0.05,
    "llm_breaker_failure_threshold": 3,
    "llm_breaker_reset_s": 30.0,
}


def llm_settings_for(base_url: str, base: Settings | None = None, **overrides: Any) -> Settings:
    values = {**FAST, "ollama_base_url": base_url, **overrides}
    return (base or Settings()).model_copy(update=values)


@pytest.fixture
def openai_server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer() as server:
        yield server


@pytest.fixture
def make_gateway() -> Iterator[Callable[..., LLMGateway]]:
    """``make_gateway(base_url, clock=..., features=..., **LLMConfig fields)``; closed afterwards."""
    made: list[LLMGateway] = []

    def make(
        base_url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        features: FeatureFlags | None = None,
        **overrides: Any,
    ) -> LLMGateway:
        config = dataclasses.replace(LLMConfig.from_settings(llm_settings_for(base_url)), **overrides)
        gateway = LLMGateway(config, features=features, clock=clock)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


@pytest.fixture
def llm(openai_server: ScriptedOpenAIServer, make_gateway: Callable[..., LLMGateway]) -> LLMGateway:
    """A gateway talking to the scripted server."""
    return make_gateway(openai_server.base_url)


@pytest.fixture
def dead_llm_url() -> str:
    """An OLLAMA_BASE_URL where nothing listens."""
    return closed_port_url()


# --- the real model server (llama.cpp + SmolLM2-135M, see tests/support/llama_server.py) -------------


@pytest.fixture(scope="session")
def real_llm() -> Iterator[LlamaServer]:
    """A real OpenAI-compatible server with a weak instruct model, SmolLM2's own chat template
    (tools are ignored by it: the model answers in text)."""
    with LlamaServer(find_install()) as server:
        yield server


@pytest.fixture(scope="session")
def real_llm_tools() -> Iterator[LlamaServer]:
    """The same model behind a ChatML template with tool calls, so the tool-call protocol runs
    through a real server (the model's calls are as unreliable as its text)."""
    with LlamaServer(find_install(), chat_template_file=TOOLS_TEMPLATE) as server:
        yield server
