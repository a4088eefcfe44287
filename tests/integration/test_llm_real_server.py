"""The gateway against a real model server (llama.cpp's llama-server, SmolLM2-135M, 2 slots of
4,096 tokens): what it learns about the server, constrained JSON, the errors a real server causes,
and a generation the client gives up on stopping on the server."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from pydantic import BaseModel

from okyaku.llm import CircuitState, LLMConfig, system, user
from okyaku.llm.errors import LLMContextExceeded, LLMOutputTruncated, LLMTimeout, LLMUnsupported
from okyaku.llm.probe import run_checks
from tests.support.fixtures import llm_settings_for
from tests.support.llama_server import CONTEXT_PER_SLOT, LlamaServer


class Weather(BaseModel):
    city: str
    temperature_c: int
    sunny: bool


@pytest.fixture
def gateway(real_llm: LlamaServer, make_gateway):
    return make_gateway(real_llm.base_url, timeout_s=60.0, max_retries=0)


def busy_slots(server: LlamaServer) -> int:
    with urllib.request.urlopen(f"{server.root_url}/slots", timeout=5) as response:
        return sum(1 for slot in json.load(response) if slot.get("is_processing"))


def test_the_server_and_its_context_are_learned(gateway):
    info = gateway.sync.server_info()
    assert (info.kind, info.context_window, info.json_schema) == ("llama.cpp", CONTEXT_PER_SLOT, True)


def test_structured_output_is_decoded_against_the_schema(gateway):
    result = gateway.sync.chat_structured(
        [system("You report the weather."), user("The weather in Paris, as JSON.")], Weather, max_tokens=128
    )
    assert isinstance(result.value, Weather)  # the grammar made it valid JSON of this shape
    assert result.usage.prompt_tokens < 200  # no schema pasted into the prompt


def test_embeddings_are_unsupported_and_leave_chat_alone(real_llm, make_gateway):
    gateway = make_gateway(real_llm.base_url, embedding_fallback_local=False)
    for _ in range(4):
        with pytest.raises(LLMUnsupported):
            gateway.sync.embed(["hello"])
    assert gateway.embedding_breaker.state is CircuitState.CLOSED
    assert gateway.breaker.state is CircuitState.CLOSED


def test_a_prompt_too_big_for_the_slot_is_refused_before_it_is_cut(gateway):
    with pytest.raises(LLMContextExceeded) as raised:
        gateway.sync.chat([user("Summarise: " + "the renewal was discussed at length. " * 500)], max_tokens=256)
    assert raised.value.details["context_window"] == CONTEXT_PER_SLOT


def test_an_answer_cut_at_max_tokens_is_truncated(gateway):
    with pytest.raises(LLMOutputTruncated):
        gateway.sync.chat([user("Write a long story about a dragon who sells software.")], max_tokens=8)


def test_a_generation_the_client_gives_up_on_stops_on_the_server(real_llm, make_gateway):
    gateway = make_gateway(real_llm.base_url, timeout_s=1.5, max_retries=0)
    gateway.sync.server_info()  # the probe is not part of the attempt
    with pytest.raises(LLMTimeout):
        gateway.sync.chat(
            [user("Write a very long essay, at least three thousand words, about the history of sales.")],
            max_tokens=3000,
            temperature=1.0,
        )
    # Generating 3,000 tokens takes this server minutes: a slot still busy well after the timeout
    # means it kept generating for nobody. (Polled gently: every answer the server sends, /slots
    # included, delays its check of a non-streamed request's connection; the gateway streams.)
    deadline = time.monotonic() + 30
    while busy_slots(real_llm) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert busy_slots(real_llm) == 0, real_llm.log_tail(20)
    assert "cancel task" in real_llm.log_tail(200)


def test_ai_check_against_the_real_server(real_llm):
    config = LLMConfig.from_settings(llm_settings_for(real_llm.base_url, llm_timeout_s=60.0))
    report = run_checks(config)
    lines = {line.check: line for line in report.lines}
    print("\n" + "\n".join(f"{line.status:5} {line.check}: {line.detail}" for line in report.lines))
    assert lines["server reachable"].status == "ok" and "llama.cpp" in lines["server reachable"].detail
    assert lines["embeddings"].status in ("warn", "fail") and "--embeddings" in lines["embeddings"].fix
    assert lines["tool calls"].status == "fail" and "instead of calling" in lines["tool calls"].detail  # tools ignored
    assert lines["JSON schema output"].status == "ok"
    assert lines["context window"].detail.startswith(f"{CONTEXT_PER_SLOT} tokens")
    assert not report.ok
