"""The LLM gateway through the real openai SDK and real HTTP, against the scripted server."""

import asyncio
import json
import math
import threading
import time

import pytest
from pydantic import BaseModel, Field

from okyaku.errors import FeatureDisabled
from okyaku.llm import (
    LOCAL_MODEL_NAME,
    CircuitState,
    FeatureFlags,
    LLMOutputInvalid,
    LLMToolCallInvalid,
    LLMUnavailable,
    Tool,
    system,
    user,
)
from okyaku.llm.health import check_ai_health
from tests.support.openai_server import Reply, ScriptedOpenAIServer


class Verdict(BaseModel):
    summary: str
    score: int = Field(ge=0, le=100)


class UpdateDeal(BaseModel):
    deal_id: str
    amount: float = Field(gt=0)


FIND_CONTACT = Tool(
    name="find_contact",
    description="Look a contact up by email",
    parameters={
        "type": "object",
        "properties": {"email": {"type": "string", "pattern": "@"}},
        "required": ["email"],
        "additionalProperties": False,
    },
)
UPDATE_DEAL = Tool(name="update_deal", description="Change a deal", parameters=UpdateDeal, writes=True)


class FakeClock:
    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now


# --- chat ------------------------------------------------------------------------------------


def test_chat_sends_configured_model_and_records_usage(llm, openai_server):
    openai_server.script(Reply.text("Hello Ada", prompt_tokens=20, completion_tokens=3))
    result = llm.sync.chat([system("be brief"), user("greet Ada")])
    assert result.content == "Hello Ada"
    assert (result.model, result.usage.total_tokens, result.finish_reason) == ("llama3.1", 23, "stop")
    body = openai_server.requests_to("chat")[0].body
    assert body["model"] == "llama3.1"
    assert body["max_tokens"] == llm.config.max_tokens and body["temperature"] == llm.config.temperature
    assert body["messages"][-1] == {"role": "user", "content": "greet Ada"}
    assert llm.usage.snapshot() == [
        {
            "operation": "chat",
            "model": "llama3.1",
            "calls": 1,
            "failures": 0,
            "prompt_tokens": 20,
            "completion_tokens": 3,
        }
    ]


def test_async_calls_work_from_several_event_loops(llm, openai_server):
    openai_server.script(Reply.text("one"), Reply.text("two"))
    first = asyncio.run(llm.chat([user("1")]))
    second = asyncio.run(llm.chat([user("2")]))  # a new loop: the client must not be bound to the old one
    assert (first.content, second.content) == ("one", "two")


# --- structured output -------------------------------------------------------------------------


def test_structured_valid_answer_asks_for_json_with_the_schema(llm, openai_server):
    openai_server.script(Reply.json_object({"summary": "Strong fit", "score": 82}))
    result = llm.sync.chat_structured([system("You rate leads."), user("Rate Acme")], Verdict)
    assert result.value == Verdict(summary="Strong fit", score=82)
    assert not result.repaired
    body = openai_server.requests_to("chat")[0].body
    assert body["response_format"] == {"type": "json_object"}
    first = body["messages"][0]
    assert first["role"] == "system" and first["content"].startswith("You rate leads.")
    assert json.dumps(Verdict.model_json_schema()) in first["content"]


def test_structured_invalid_then_repaired_sends_the_errors_back(llm, openai_server):
    openai_server.script(
        Reply.text('```json\n{"summary": "ok", "score": 250}\n```'),
        Reply.json_object({"summary": "ok", "score": 90}),
    )
    result = llm.sync.chat_structured([user("Rate Acme")], Verdict)
    assert result.value.score == 90 and result.repaired
    assert result.usage.prompt_tokens == 24  # both rounds counted
    repair = openai_server.requests_to("chat")[1].messages
    assert repair[-2]["role"] == "assistant" and "250" in repair[-2]["content"]
    assert repair[-1]["role"] == "user" and "score" in repair[-1]["content"]


def test_structured_invalid_twice_raises_a_typed_503(llm, openai_server):
    openai_server.script(Reply.text("not json at all"), Reply.json_object({"summary": "no score"}))
    with pytest.raises(LLMOutputInvalid) as raised:
        llm.sync.chat_structured([user("Rate Acme")], Verdict)
    error = raised.value
    assert error.status_code == 503 and error.code == "llm_output_invalid"
    assert error.details == [{"field": "score", "message": "Field required", "type": "missing"}]
    assert llm.breaker.state is CircuitState.CLOSED  # the server is fine; the answer was not


# --- tools --------------------------------------------------------------------------------------


def test_valid_tool_calls_come_back_parsed(llm, openai_server):
    openai_server.script(
        Reply(
            tool_calls=[
                {"name": "find_contact", "arguments": {"email": "ada@example.com"}},
                {"name": "update_deal", "arguments": {"deal_id": "D-7", "amount": 1200}},
            ]
        )
    )
    result = llm.sync.chat_with_tools([user("Bump the Acme deal")], [FIND_CONTACT, UPDATE_DEAL])
    assert [c.name for c in result.tool_calls] == ["find_contact", "update_deal"]
    assert result.tool_calls[0].arguments == {"email": "ada@example.com"}
    assert result.tool_calls[1].parsed == UpdateDeal(deal_id="D-7", amount=1200)
    sent = openai_server.requests_to("chat")[0].body["tools"]
    assert sent[0]["function"]["parameters"] == FIND_CONTACT.parameters
    assert sent[1]["function"]["parameters"]["required"] == ["deal_id", "amount"]


def test_bad_tool_arguments_are_sent_back_once_then_rejected(llm, openai_server):
    openai_server.script(
        Reply.tool_call("update_deal", {"deal_id": "D-7", "amount": -5}),
        Reply.tool_call("update_deal", {"deal_id": "D-7"}),
    )
    with pytest.raises(LLMToolCallInvalid) as raised:
        llm.sync.chat_with_tools([user("Zero the deal")], [UPDATE_DEAL])
    assert raised.value.status_code == 503
    assert [(d["field"], d["type"]) for d in raised.value.details] == [("update_deal.amount", "missing")]
    repair = openai_server.requests_to("chat")[1].messages
    assert repair[-2]["tool_calls"][0]["function"]["name"] == "update_deal"
    assert repair[-1]["role"] == "tool" and "amount" in repair[-1]["content"]


@pytest.mark.parametrize(
    "bad_call",
    [
        {"name": "delete_everything", "arguments": {}},
        {"name": "find_contact", "arguments": "{not json"},
        {"name": "find_contact", "arguments": {"email": "no-at-sign"}},
        {"name": "find_contact", "arguments": {"email": "a@b.c", "limit": 5}},
        {"name": "find_contact", "arguments": ["a@b.c"]},
    ],
)
def test_unknown_tools_and_malformed_arguments_are_rejected(llm, openai_server, bad_call):
    openai_server.script(Reply(tool_calls=[bad_call]), Reply(tool_calls=[bad_call]))
    with pytest.raises(LLMToolCallInvalid):
        llm.sync.chat_with_tools([user("find Ada")], [FIND_CONTACT])


def test_a_bad_tool_call_can_be_repaired(llm, openai_server):
    openai_server.script(
        Reply.tool_call("find_contact", {"email": "ada"}), Reply.tool_call("find_contact", {"email": "ada@x.io"})
    )
    result = llm.sync.chat_with_tools([user("find Ada")], [FIND_CONTACT])
    assert result.repaired and result.tool_calls[0].arguments == {"email": "ada@x.io"}


# --- streaming ----------------------------------------------------------------------------------


def test_stream_yields_deltas_in_order_and_counts_usage(llm, openai_server):
    chunks = ["The ", "deal ", "closes ", "Friday", "."]
    openai_server.script(Reply.stream(chunks, completion_tokens=5))

    async def collect():
        return [delta async for delta in llm.stream_chat([user("when?")])]

    assert asyncio.run(collect()) == chunks
    body = openai_server.requests_to("chat")[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert llm.usage.snapshot()[0]["completion_tokens"] == 5
    openai_server.script(Reply.stream(["a", "b", "c"]))
    assert list(llm.sync.stream_chat([user("again")])) == ["a", "b", "c"]


def test_stream_survives_the_consumer_going_away(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, max_concurrency=1)
    openai_server.script(Reply.stream([f"part{i} " for i in range(50)], chunk_delay_s=0.02), Reply.text("next"))

    async def read_two_and_leave():
        stream = llm.stream_chat([user("long answer")])
        got = [await stream.__anext__(), await stream.__anext__()]
        await stream.aclose()
        return got

    assert asyncio.run(read_two_and_leave()) == ["part0 ", "part1 "]
    assert openai_server.wait_for_disconnects(1)  # the HTTP response was closed, not left streaming
    assert llm.in_flight == 0
    assert llm.sync.chat([user("still there?")]).content == "next"  # the only slot was freed
    assert llm.breaker.state is CircuitState.CLOSED


def test_a_sync_consumer_breaking_out_also_closes_the_stream(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, max_concurrency=1)
    openai_server.script(Reply.stream([f"w{i} " for i in range(50)], chunk_delay_s=0.02), Reply.text("ok"))
    for i, _ in enumerate(llm.sync.stream_chat([user("go")])):
        if i == 1:
            break
    assert openai_server.wait_for_disconnects(1)
    assert llm.sync.chat([user("x")]).content == "ok"


def test_a_stream_cut_by_the_server_raises_after_the_deltas_it_had(llm, openai_server):
    openai_server.script(Reply.stream(["one ", "two ", "three "], drop_after_chunks=2))
    received = []
    with pytest.raises(LLMUnavailable) as raised:
        for delta in llm.sync.stream_chat([user("count")]):
            received.append(delta)
    assert received == ["one ", "two "]
    assert "broke off" in raised.value.message
    assert llm.breaker.consecutive_failures == 1


# --- retries, timeouts, breaker -------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", [Reply.error(500), Reply.rate_limited(0.01), Reply.malformed(), Reply.dropped()], ids=str
)
def test_transient_faults_are_retried(llm, openai_server, fault):
    openai_server.script(fault, fault, Reply.text("made it"))
    assert llm.sync.chat([user("hi")]).content == "made it"
    assert len(openai_server.requests_to("chat")) == 3
    assert llm.breaker.state is CircuitState.CLOSED
    assert llm.usage.snapshot()[0]["failures"] == 2


def test_retries_give_up_with_a_503_and_the_breaker_opens(llm, openai_server):
    openai_server.fault = Reply.error(500)
    with pytest.raises(LLMUnavailable) as raised:
        llm.sync.chat([user("hi")])
    assert raised.value.to_body()["error"]["code"] == "llm_unavailable"
    assert raised.value.details["attempts"] == 3
    assert llm.breaker.state is CircuitState.OPEN


def test_a_missing_model_is_not_retried_and_does_not_trip_the_breaker(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, chat_model="mistral")
    for _ in range(4):
        with pytest.raises(LLMUnavailable) as raised:
            llm.sync.chat([user("hi")])
        assert raised.value.code == "llm_model_missing"
        assert "ollama pull mistral" in raised.value.message
    assert len(openai_server.requests_to("chat")) == 4
    assert llm.breaker.state is CircuitState.CLOSED


def test_a_dead_llm_costs_one_timeout_then_fails_fast_until_a_probe_succeeds(openai_server, make_gateway):
    clock = FakeClock()
    llm = make_gateway(openai_server.base_url, clock=clock, timeout_s=0.2, max_retries=0, breaker_failure_threshold=1)
    openai_server.fault = Reply.slow(5.0)  # accepts, never answers in time

    started = time.perf_counter()
    with pytest.raises(LLMUnavailable) as first:
        llm.sync.chat([user("hi")])
    first_s = time.perf_counter() - started
    assert "timed out" in first.value.message
    assert llm.breaker.state is CircuitState.OPEN

    fast = []
    for _ in range(20):
        started = time.perf_counter()
        with pytest.raises(LLMUnavailable) as raised:
            llm.sync.chat([user("hi")])
        fast.append(time.perf_counter() - started)
        assert raised.value.code == "llm_circuit_open"
    assert len(openai_server.requests_to("chat")) == 1  # open circuit: nothing reached the server
    print(f"\nfirst call {first_s * 1000:.0f} ms (timeout 200 ms); open-circuit calls max {max(fast) * 1e6:.0f} µs")

    openai_server.fault = None
    openai_server.script(Reply.text("back"))
    clock.now += llm.config.breaker_reset_s
    assert llm.sync.chat([user("hi")]).content == "back"  # the half-open probe
    transitions = [(t.from_state.value, t.to_state.value) for t in llm.breaker.transitions]
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_connection_refused_opens_the_breaker_and_a_failed_probe_reopens_it(dead_llm_url, make_gateway):
    clock = FakeClock()
    llm = make_gateway(dead_llm_url, clock=clock)
    with pytest.raises(LLMUnavailable) as raised:
        llm.sync.chat([user("hi")])
    assert raised.value.details["attempts"] == 3 and "connection failed" in raised.value.message
    assert llm.breaker.state is CircuitState.OPEN
    clock.now += llm.config.breaker_reset_s
    with pytest.raises(LLMUnavailable) as probe:
        llm.sync.chat([user("hi")])
    assert probe.value.details["attempts"] == 1  # only the probe went out
    assert llm.breaker.state is CircuitState.OPEN
    assert [t.to_state.value for t in llm.breaker.transitions] == ["open", "half_open", "open"]


def test_concurrency_is_limited(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, max_concurrency=1)
    openai_server.responder = lambda request: Reply.slow(0.05, content="ok")
    results = []
    threads = [threading.Thread(target=lambda: results.append(llm.sync.chat([user("x")]).content)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["ok"] * 4
    assert openai_server.max_in_flight == 1


# --- embeddings ---------------------------------------------------------------------------------


def test_embeddings_are_batched_normalised_and_labelled(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, embedding_batch_size=2)
    texts = ["renewal of the contract", "contract renewal", "lunch", "quarterly forecast", "forecast"]
    result = llm.sync.embed(texts)
    assert (result.model, result.dimension, result.provider, result.degraded) == (
        "nomic-embed-text",
        768,
        "ollama",
        False,
    )
    assert [len(r.body["input"]) for r in openai_server.requests_to("embeddings")] == [2, 2, 1]
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-9) for v in result.vectors)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b, strict=True))

    # order kept: the two renewal texts share words, lunch shares none
    assert cos(result.vectors[0], result.vectors[1]) > cos(result.vectors[0], result.vectors[2])
    assert llm.known_dimension("nomic-embed-text") == 768


def test_embeddings_fall_back_to_the_local_model_when_ollama_is_down(dead_llm_url, make_gateway):
    llm = make_gateway(dead_llm_url)
    result = llm.sync.embed(["enterprise software renewal", "lunch order"])
    assert (result.model, result.dimension, result.provider, result.degraded) == (LOCAL_MODEL_NAME, 384, "local", True)
    again = asyncio.run(llm.embed(["enterprise software renewal"]))  # circuit open now: no second timeout
    assert again.degraded and again.vectors[0] == pytest.approx(result.vectors[0], abs=1e-6)


def test_without_fallback_a_dead_ollama_is_a_503(dead_llm_url, make_gateway):
    llm = make_gateway(dead_llm_url, embedding_fallback_local=False)
    with pytest.raises(LLMUnavailable):
        llm.sync.embed(["x"])


def test_a_local_embedding_model_never_calls_the_server(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, embedding_model="local:all-minilm-l6-v2")
    result = llm.sync.embed(["hello"])
    assert (result.provider, result.dimension, result.degraded) == ("local", 384, False)
    assert openai_server.requests == []


# --- features and health ------------------------------------------------------------------------


def test_a_disabled_feature_is_a_clear_503():
    flags = FeatureFlags(chat=False)
    flags.require("content")
    with pytest.raises(FeatureDisabled) as raised:
        flags.require("chat")
    assert raised.value.status_code == 503
    assert raised.value.details == {"feature": "chat", "setting": "AI_CHAT_ENABLED"}


def test_health_when_everything_is_there(llm):
    report = check_ai_health(llm, database_check=lambda: None)
    assert not report.degraded and report.status == "ok"
    assert report.ollama.reachable and report.ollama.models == ["llama3.1:latest", "nomic-embed-text:latest"]
    assert report.chat_model.present
    assert (report.embedding.provider, report.embedding.dimension, report.embedding.fallback) == ("ollama", 768, False)
    assert report.circuit.state == "closed" and report.database.reachable


def test_health_names_a_missing_chat_model(make_gateway):
    with ScriptedOpenAIServer(models=("nomic-embed-text:latest",)) as server:
        report = check_ai_health(make_gateway(server.base_url))
    assert report.degraded and not report.chat_model.present
    assert any("ollama pull llama3.1" in reason for reason in report.reasons)


def test_health_with_ollama_down_is_degraded_with_local_embeddings(dead_llm_url, make_gateway):
    llm = make_gateway(dead_llm_url)
    report = check_ai_health(llm, database_check=lambda: "connection refused")
    assert report.degraded and not report.ollama.reachable
    assert (report.embedding.provider, report.embedding.model, report.embedding.dimension) == (
        "local",
        LOCAL_MODEL_NAME,
        384,
    )
    assert report.embedding.fallback
    assert report.database.reachable is False
    assert len(report.reasons) == 3
