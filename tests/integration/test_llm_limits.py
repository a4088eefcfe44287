"""The gateway's limits through real HTTP against the scripted server: errors that say what
happened, one breaker per operation family, budgets (timeouts not retried, the request closed when
the client gives up, queueing inside the time limit, max_tokens per family) and the context window."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import BaseModel, Field

from okyaku.llm import CircuitState, LLMOutputInvalid, LLMUnavailable, Tool, system, user
from okyaku.llm.errors import (
    LLMContextExceeded,
    LLMOutputTruncated,
    LLMRequestRejected,
    LLMTimeout,
    LLMUnsupported,
)
from tests.support.openai_server import Reply, ScriptedOpenAIServer


class Verdict(BaseModel):
    summary: str = Field(max_length=200)
    score: int = Field(ge=0, le=100)


LOOKUP = Tool(
    name="lookup",
    description="Look a record up",
    parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
)


@pytest.fixture
def llama_like():
    with ScriptedOpenAIServer(kind="llama.cpp", context_window=1024) as server:
        yield server


# --- errors that say what happened ---------------------------------------------------------------


def test_a_generation_timeout_is_not_retried_and_the_request_is_closed(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, timeout_s=0.3, max_retries=2)
    openai_server.fault = Reply.slow(10.0)
    with pytest.raises(LLMTimeout) as raised:
        llm.sync.chat([user("write a long essay")])
    assert raised.value.code == "llm_timeout" and isinstance(raised.value, LLMUnavailable)
    assert len(openai_server.requests_to("chat")) == 1  # a slow model is as slow a second time
    # the server saw the client go (so a real one stops generating), long before its 10 s
    assert openai_server.wait_for_disconnects(1, timeout_s=5.0)
    assert llm.breaker.consecutive_failures == 1  # a hung server still counts toward opening the circuit


def test_a_cut_off_answer_is_truncated_not_invalid_json_and_never_repaired(llm, openai_server):
    openai_server.script(Reply.text('{"summary": "Strong fit, because', finish_reason="length"))
    with pytest.raises(LLMOutputTruncated) as raised:
        llm.sync.chat_structured([user("Rate Acme")], Verdict, max_tokens=64)
    error = raised.value
    assert error.code == "llm_output_truncated" and error.details["max_tokens"] == 64
    assert isinstance(error, LLMOutputInvalid) and not isinstance(error, LLMUnavailable)
    assert len(openai_server.requests_to("chat")) == 1  # the cut text was not sent back for "repair"
    assert llm.breaker.state is CircuitState.CLOSED


def test_invalid_output_is_not_reported_as_the_model_being_unavailable(llm, openai_server):
    openai_server.script(Reply.text("no json"), Reply.text("still none"))
    with pytest.raises(LLMOutputInvalid) as raised:
        llm.sync.chat_structured([user("Rate Acme")], Verdict)
    assert not isinstance(raised.value, LLMUnavailable)
    assert "unavailable" not in raised.value.message


def test_a_stream_cut_at_max_tokens_says_so(llm, openai_server):
    openai_server.script(Reply.stream(["The ", "deal "], finish_reason="length"))
    received = []
    with pytest.raises(LLMOutputTruncated):
        for delta in llm.sync.stream_chat([user("when?")], max_tokens=2):
            received.append(delta)
    assert received == ["The ", "deal "]


def test_an_endpoint_the_server_lacks_is_unsupported_not_transient(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, embedding_fallback_local=False)
    for _ in range(5):
        openai_server.script(Reply.error(501, "This server does not support embeddings"), route="embeddings")
        with pytest.raises(LLMUnsupported) as raised:
            llm.sync.embed(["hello"])
        assert raised.value.code == "llm_unsupported" and raised.value.details["status"] == 501
    assert len(openai_server.requests_to("embeddings")) == 5  # one request each: never retried
    assert llm.embedding_breaker.state is CircuitState.CLOSED  # the server is up; it cannot do this
    openai_server.script(Reply.text("still chatting"))
    assert llm.sync.chat([user("hi")]).content == "still chatting"


def test_an_unsupported_embeddings_endpoint_falls_back_to_the_local_model(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url)
    openai_server.script(Reply.error(501, "This server does not support embeddings"), route="embeddings")
    result = llm.sync.embed(["enterprise renewal"])
    assert (result.provider, result.degraded) == ("local", True)


def test_a_404_naming_no_model_is_unsupported_and_a_missing_model_stays_model_missing(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url)
    openai_server.script(Reply.error(404, "File Not Found"))
    with pytest.raises(LLMUnsupported):
        llm.sync.chat([user("hi")])
    other = make_gateway(openai_server.base_url, chat_model="mistral")
    with pytest.raises(LLMUnavailable) as raised:
        other.sync.chat([user("hi")])
    assert raised.value.code == "llm_model_missing"


def test_embeddings_failures_never_open_the_chat_breaker(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, embedding_fallback_local=False, max_retries=0)
    for _ in range(3):
        openai_server.script(Reply.error(500), route="embeddings")
        with pytest.raises(LLMUnavailable):
            llm.sync.embed(["x"])
    assert llm.embedding_breaker.state is CircuitState.OPEN
    assert llm.breaker.state is CircuitState.CLOSED
    openai_server.script(Reply.text("chat is fine"))
    assert llm.sync.chat([user("hi")]).content == "chat is fine"
    with pytest.raises(LLMUnavailable) as raised:
        llm.sync.embed(["x"])
    assert raised.value.code == "llm_circuit_open"


# --- budgets ------------------------------------------------------------------------------------


def test_the_wait_for_a_slot_counts_inside_the_time_limit(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, max_concurrency=1, timeout_s=5.0)
    openai_server.script(Reply.slow(1.0, content="first"))
    holder = threading.Thread(target=lambda: llm.sync.chat([user("long")]))
    holder.start()
    deadline = time.monotonic() + 5
    while llm.in_flight == 0 and time.monotonic() < deadline:  # until the first call holds the slot
        time.sleep(0.005)
    with pytest.raises(LLMUnavailable) as raised:
        llm.sync.chat([user("short")], timeout_s=0.2)
    holder.join()
    assert raised.value.code == "llm_busy"
    assert len(openai_server.requests_to("chat")) == 1  # the second never reached the server


def test_a_deadline_already_past_sends_nothing(llm, openai_server):
    with pytest.raises(LLMTimeout):
        llm.sync.chat([user("hi")], deadline=time.monotonic() - 1)
    assert openai_server.requests_to("chat") == []


def test_max_tokens_default_per_operation_family(llm, openai_server):
    openai_server.script(Reply.text("hi"), Reply.tool_call("lookup", {"q": "Acme"}), Reply.text("again"))
    llm.sync.chat([user("hi")])
    llm.sync.chat_with_tools([user("find Acme")], [LOOKUP])
    llm.sync.chat([user("hi")], max_tokens=77)
    sent = [r.body["max_tokens"] for r in openai_server.requests_to("chat")]
    assert sent == [llm.config.max_tokens, 512, 77]


# --- context window and structured output ----------------------------------------------------------


def test_a_prompt_that_would_not_fit_the_context_is_not_sent(llama_like, make_gateway):
    llm = make_gateway(llama_like.base_url)
    assert llm.sync.server_info().context_window == 1024
    with pytest.raises(LLMContextExceeded) as raised:
        llm.sync.chat([system("Summarise."), user("word " * 600)], max_tokens=256)
    details = raised.value.details
    assert raised.value.code == "llm_context_exceeded" and isinstance(raised.value, LLMRequestRejected)
    assert details["context_window"] == 1024 and details["prompt_tokens_estimate"] + 256 > 1024
    assert llama_like.requests_to("chat") == []
    llama_like.script(Reply.text("short"))
    assert llm.sync.chat([user("word " * 100)], max_tokens=256).content == "short"


def test_ollama_num_ctx_on_our_side_overrides_what_the_server_says(llama_like, make_gateway):
    llm = make_gateway(llama_like.base_url, num_ctx=16384)
    llama_like.script(Reply.text("fits"))
    assert llm.sync.chat([user("word " * 600)], max_tokens=256).content == "fits"
    assert llm.sync.server_info().context_source == "OLLAMA_NUM_CTX"


@pytest.mark.parametrize(
    ("version", "num_ctx", "context", "json_schema"),
    [("0.6.8", None, 4096, True), ("0.6.8", 8192, 8192, True), ("0.4.7", None, 2048, False)],
)
def test_ollama_context_and_json_schema_support_are_learned(make_gateway, version, num_ctx, context, json_schema):
    with ScriptedOpenAIServer(kind="ollama", ollama_version=version, ollama_num_ctx=num_ctx) as server:
        info = make_gateway(server.base_url).sync.server_info()
    assert (info.kind, info.context_window, info.json_schema) == ("ollama", context, json_schema)


def test_the_server_is_asked_once_per_process(llama_like, make_gateway):
    llm = make_gateway(llama_like.base_url)
    llama_like.script(Reply.text("a"), Reply.text("b"))
    llm.sync.chat([user("1")])
    llm.sync.chat([user("2")])
    assert [r.path for r in llama_like.requests].count("/props") == 1


def test_structured_output_is_decoded_against_the_schema_where_the_server_can(llama_like, make_gateway):
    llm = make_gateway(llama_like.base_url)
    llama_like.script(Reply.json_object({"summary": "Strong fit", "score": 82}))
    result = llm.sync.chat_structured([system("You rate leads."), user("Rate Acme")], Verdict)
    assert result.value.score == 82
    body = llama_like.requests_to("chat")[0].body
    sent = body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "Verdict"
    assert sent["json_schema"]["schema"]["properties"]["score"]["maximum"] == 100
    assert "maxLength" not in sent["json_schema"]["schema"]["properties"]["summary"]  # no huge grammars
    assert '"properties"' not in body["messages"][0]["content"]  # the schema is not pasted into the prompt


def test_a_schema_the_server_refuses_falls_back_to_json_mode_once(llama_like, make_gateway):
    llm = make_gateway(llama_like.base_url)
    llama_like.script(
        Reply.error(400, "JSON schema conversion failed"),
        Reply.json_object({"summary": "ok", "score": 1}),
        Reply.json_object({"summary": "ok", "score": 2}),
    )
    assert llm.sync.chat_structured([user("Rate")], Verdict).value.score == 1
    assert llm.sync.chat_structured([user("Rate")], Verdict).value.score == 2
    formats = [r.body["response_format"]["type"] for r in llama_like.requests_to("chat")]
    assert formats == ["json_schema", "json_object", "json_object"]


def test_a_context_error_from_the_server_is_context_exceeded(llm, openai_server):
    openai_server.script(Reply.error(400, "the request exceeds the available context size, try increasing it"))
    with pytest.raises(LLMContextExceeded):
        llm.sync.chat([user("hi")])
    assert len(openai_server.requests_to("chat")) == 1


def test_a_default_answer_budget_shrinks_to_the_room_the_context_leaves(llama_like, make_gateway):
    llm = make_gateway(llama_like.base_url)
    llama_like.script(Reply.text("ok"))
    llm.sync.chat([user("word " * 100)])
    sent = llama_like.requests_to("chat")[0].body["max_tokens"]
    assert 256 <= sent < llm.config.max_tokens  # 1,024 would not fit beside the prompt in 1,024


def test_an_enclosing_llm_deadline_cuts_the_attempt_short(openai_server, make_gateway):
    from okyaku.llm.budget import llm_deadline

    llm = make_gateway(openai_server.base_url, timeout_s=30.0)
    openai_server.script(Reply.text("warm"))
    llm.sync.chat([user("hi")])  # the client made and the server probed: the deadline is the request's alone
    openai_server.fault = Reply.slow(10.0)
    with llm_deadline(0.3), pytest.raises(LLMTimeout) as raised:
        llm.sync.chat([user("hi")])
    assert raised.value.details["timeout_s"] <= 0.3  # not the 30 s of LLM_TIMEOUT_S
    assert openai_server.wait_for_disconnects(1, timeout_s=5.0)


def test_a_callers_timeout_never_exceeds_llm_timeout_s(openai_server, make_gateway):
    llm = make_gateway(openai_server.base_url, timeout_s=0.3)
    openai_server.fault = Reply.slow(10.0)
    with pytest.raises(LLMTimeout) as raised:
        llm.sync.chat([user("hi")], timeout_s=20.0)  # what recommendations/predictions pass
    assert raised.value.details["timeout_s"] == 0.3


def test_health_reports_both_breakers_and_what_the_server_is(llama_like, make_gateway):
    from okyaku.llm.health import check_ai_health

    report = check_ai_health(make_gateway(llama_like.base_url))
    assert report.embedding_circuit.state == "closed"
    assert (report.server["kind"], report.server["context_window"]) == ("llama.cpp", 1024)


def test_text_answers_are_streamed_so_a_server_stops_when_the_client_goes(llm, openai_server):
    openai_server.script(
        Reply.text("hi"), Reply.json_object({"summary": "s", "score": 1}), Reply.tool_call("lookup", {"q": "x"})
    )
    assert llm.sync.chat([user("hi")]).content == "hi"
    assert llm.sync.chat_structured([user("rate")], Verdict).value.score == 1
    llm.sync.chat_with_tools([user("find x")], [LOOKUP])
    streamed = [bool(r.body.get("stream")) for r in openai_server.requests_to("chat")]
    assert streamed == [True, True, False]  # tool calls stay whole: short, and streamed differently by servers


def test_an_answer_stream_cut_mid_way_is_retried(llm, openai_server):
    openai_server.script(Reply.stream(["{", '"summary"'], drop_after_chunks=1), Reply.text("whole"))
    assert llm.sync.chat([user("hi")]).content == "whole"
    assert len(openai_server.requests_to("chat")) == 2


def test_a_model_call_never_outlives_the_invocation_that_waits_for_it(openai_server, make_gateway):
    from okyaku.clock import invocation

    class LambdaContext:  # 2.4 s left: the call gets what is left less the 2 s kept for answering
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 2400

    llm = make_gateway(openai_server.base_url, timeout_s=30.0)
    openai_server.script(Reply.text("warm"))
    llm.sync.chat([user("hi")])
    openai_server.fault = Reply.slow(10.0)
    with invocation(LambdaContext()), pytest.raises(LLMTimeout) as raised:
        llm.sync.chat([user("hi")])
    assert raised.value.details["timeout_s"] <= 1.0
