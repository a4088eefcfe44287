"""Chat against a real model server (llama.cpp + SmolLM2-135M, see tests/support/llama_server.py).

The model is weak: its plans are often wrong and its words often invented. These tests assert the
properties that must hold whatever it says — never its text: every answer is a refusal, a question
back, or stated from rows that the database returned; numbers and names the user sees are in those
rows or in the question; nothing is a 5xx; the response says truthfully who planned and who wrote."""

from __future__ import annotations

import json
import re
import time

import pytest

from okyaku.chat.fallback import CANNOT
from okyaku.chat.planner import NO_ACTION_ASKED, NO_PLAN, NOT_ANSWERABLE
from okyaku.chat.service import OFF_TOPIC
from okyaku.local.template import parse_template
from tests.conftest import ROOT
from tests.integration.chat_support import FixedClock, build_crm, chat_client

# Questions of every kind: ones the parser answers, ones only a model could plan, off-topic ones,
# follow-ups, actions, and ones that invite an invented answer.
QUESTIONS = [
    "How much did we win last quarter?",
    "What is the capital of Australia?",
    "Tell me about Initech",
    "Which deals are closing this month?",
    "Which software companies have deals over 10000?",
    "Who is our biggest customer?",
    "What should I focus on today?",
    "Summarise the notes about Globex",
    "Write me a haiku about the sea",
    "How many contacts does Acme Corp have?",
    "create a task to call Sarah next Tuesday",
]
FIXED_TEXTS = {CANNOT, NO_PLAN, NOT_ANSWERABLE, NO_ACTION_ASKED, OFF_TOPIC}
_NUMBER = re.compile(r"(?<![\w.])-?\d(?:[\d,]*\d)?(?:\.\d+)?")
_NAME = re.compile(r"\b[A-Z][a-z]{2,}\b")


def chat_timeout_s() -> int:
    """The Chat function's Timeout in template.yaml: one turn must fit in it."""
    return parse_template(ROOT / "template.yaml").functions["ChatFunction"].timeout_s


def chat_llm_overrides() -> dict[str, float]:
    """The Chat function's LLM settings as the template sets them (its own Environment)."""
    env = parse_template(ROOT / "template.yaml").functions["ChatFunction"].environment
    return {
        "timeout_s": float(env.get("LLM_TIMEOUT_S", 12)),
        "max_retries": int(env.get("LLM_MAX_RETRIES", 0)),
    }


def _cells(result: dict) -> str:
    return " ".join(str(cell) for row in result["data"]["rows"] for cell in row) + " " + str(result["data"])


def assert_grounded(question: str, result: dict) -> None:
    """What a user reads is backed by the rows (independently of okyaku.chat.grounding)."""
    answer = result["answer"]
    assert answer.strip(), "an empty answer"
    if result["plan"] is None and not result["actions"]:
        # No data was read: the answer is one of our fixed texts or a model's question back.
        clarifying = any("asks this back" in n for n in result["notes"])
        assert answer in FIXED_TEXTS or clarifying or answer.startswith(("I couldn't", "Which", "No ")), answer
        if clarifying:
            assert answer.endswith("?") and not any(ch.isdigit() for ch in answer)
        return
    if result["actions"]:
        assert all(a["status"] == "pending" for a in result["actions"])  # proposals, never writes
        return
    source = _cells(result) + " " + question
    for number in _NUMBER.findall(answer):
        value = float(number.replace(",", ""))
        stated = {float(n.replace(",", "")) for n in _NUMBER.findall(source)}
        assert (
            value in stated
            or round(value) in {round(s) for s in stated}
            or value <= len(result["data"]["rows"])
            or str(int(value)) in source
        ), f"{number} is not in the data: {answer!r}"
    if result["phrased_by"] == "llm":
        lowered = source.lower()
        for name in _NAME.findall(answer):
            common = {"the", "there", "this", "these", "you", "your", "we", "our", "no", "yes", "here", "they"}
            assert name.lower() in lowered or name.lower() in common or name.lower() in result["plan"]["entity"], (
                f"{name} is not in the data: {answer!r}"
            )


@pytest.fixture(params=["plain", "tools"])
def real_server(request):
    """The model with its own template (tools ignored) and with a tool-calling template."""
    return request.getfixturevalue("real_llm" if request.param == "plain" else "real_llm_tools")


@pytest.fixture
def chat(real_server, make_gateway, runtime, tenant, pipeline):
    clock = FixedClock()
    build_crm(tenant, pipeline, runtime, clock.now)
    gateway = make_gateway(real_server.base_url, **chat_llm_overrides())
    client = chat_client(runtime, gateway, tenant.org.api_key, clock)
    yield client, gateway
    client.close()


def test_every_answer_is_a_refusal_or_stated_from_the_data(chat):
    client, _ = chat
    limit = chat_timeout_s()
    conversation = None
    for question in QUESTIONS:
        started = time.monotonic()
        body = {"message": question} | ({"conversation_id": conversation} if conversation else {})
        response = client.post("/api/v1/ai/chat", json=body)
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        result = response.json()
        conversation = result["conversation_id"]
        assert_grounded(question, result)
        if result["planner"] == "llm" and result["plan"] is not None:
            assert any(n.startswith("Read by the language model as:") for n in result["notes"])
        # A turn fits the function's timeout: the gateway's budgets are what bound it.
        assert elapsed < limit, f"{question!r} took {elapsed:.1f} s, past the Chat function's {limit} s"


def test_off_topic_questions_never_reach_the_model(chat):
    client, gateway = chat
    before = gateway.usage.snapshot()
    for question in ("What is the capital of Australia?", "Write me a haiku about the sea"):
        result = client.post("/api/v1/ai/chat", json={"message": question}).json()
        assert result["answer"] == OFF_TOPIC and result["planner"] is None
    assert gateway.usage.snapshot() == before  # not one model call


def test_a_streamed_answer_sends_only_checked_text(chat):
    client, _ = chat
    for question in ("Who is our biggest customer?", "Which software companies have deals over 10000?"):
        with client.stream("POST", "/api/v1/ai/chat/stream", json={"message": question}) as response:
            assert response.status_code == 200
            blocks = "".join(response.iter_text()).strip().split("\n\n")
        events = [
            (b.split("\n", 1)[0].removeprefix("event: "), json.loads(b.split("data: ", 1)[1])) for b in blocks if b
        ]
        assert events[-1][0] == "final"
        final = events[-1][1]
        streamed = "".join(d["text"] for kind, d in events[:-1] if kind == "delta")
        assert streamed.strip() == final["answer"].strip()  # what was streamed is what was checked
        assert_grounded(question, final)
