"""The conversation analysis fits the model's context window: with constrained decoding the schema
is not in the prompt, chunks are sized so prompt and answer fit, and an answer cut off at
max_tokens makes the chunk smaller instead of being "repaired"."""

from __future__ import annotations

import re
from datetime import date

import pytest

from okyaku.conversation.analyzer import ConversationAnalyzer, TextToAnalyse
from okyaku.llm.errors import LLMContextExceeded
from okyaku.llm.tokens import estimate_messages
from tests.support.openai_server import RecordedRequest, Reply, ScriptedOpenAIServer

SENTENCES = [f"Sentence {i}: the customer asked about the renewal terms and we agreed to follow up." for i in range(90)]
TEXT = " ".join(SENTENCES)  # about 7,800 characters: one chunk of the default 6,000 would not fit 4,096 tokens


def quoting(request: RecordedRequest) -> Reply:
    text = re.search(r"<<<\n(.*)\n>>>", request.messages[-1]["content"], re.S)
    assert text is not None
    first = re.split(r"(?<=[.!?])\s", text.group(1).strip())[0]
    return Reply.json_object(
        {
            "summary": "A renewal call.",
            "key_points": [{"point": "Opening", "quote": first}],
            "sentiment": {"score": 0.1, "label": "neutral"},
        }
    )


def item(text: str = TEXT) -> TextToAnalyse:
    return TextToAnalyse(text, "call", "outbound", date(2026, 11, 18), "Renewal call", ("Lead", "Won"))


@pytest.fixture
def server():
    with ScriptedOpenAIServer(kind="llama.cpp", context_window=4096) as scripted:
        scripted.responder = quoting
        yield scripted


def test_every_chunk_and_its_answer_fit_a_4096_token_context(server, make_gateway):
    analyzer = ConversationAnalyzer(make_gateway(server.base_url), chunk_chars=6000, max_tokens=2048)
    result = analyzer.analyse(item())
    requests = server.requests_to("chat")
    assert result.chunks == len(requests) >= 2
    for request in requests:
        body = request.body
        assert body["response_format"]["type"] == "json_schema"  # the schema is decoded against, not pasted
        assert body["max_tokens"] == 2048
        assert estimate_messages(body["messages"]) + body["max_tokens"] <= 4096
    assert result.analysis.key_points[0].quote == SENTENCES[0].rstrip(".")
    assert all(TEXT[p.start : p.end] == p.quote for p in result.analysis.key_points)


def test_a_small_context_shares_itself_between_text_and_answer(make_gateway):
    with ScriptedOpenAIServer(kind="llama.cpp", context_window=2048) as small:
        small.responder = quoting
        result = ConversationAnalyzer(make_gateway(small.base_url), max_tokens=2048).analyse(item(TEXT[:2000]))
        sent = [r.body["max_tokens"] for r in small.requests_to("chat")]
    assert set(sent) == {1024} and result.chunks == len(sent)


def test_a_cut_off_answer_splits_the_chunk_instead_of_repairing_it(server, make_gateway):
    text = " ".join(SENTENCES[:30])  # one chunk
    server.script(Reply.text('{"summary": "A renewal call", "key_points": [{"point"', finish_reason="length"))
    result = ConversationAnalyzer(make_gateway(server.base_url)).analyse(item(text))
    requests = server.requests_to("chat")
    assert result.chunks == len(requests) - 1 >= 2  # the cut answer, then the smaller pieces
    assert all(len(r.messages) == 2 for r in requests)  # no repair turn carrying the cut text
    assert result.analysis.key_points[0].quote == SENTENCES[0].rstrip(".")


def test_a_server_without_json_schema_support_cannot_fit_the_pasted_schema_and_says_so(make_gateway):
    with ScriptedOpenAIServer(kind="ollama", ollama_version="0.4.7") as old:  # 2,048 tokens, JSON mode only
        with pytest.raises(LLMContextExceeded):
            ConversationAnalyzer(make_gateway(old.base_url)).analyse(item())
        assert old.requests_to("chat") == []  # nothing was sent to be cut silently
