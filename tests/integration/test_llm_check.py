"""``okyaku ai check`` against a scripted Ollama-like server: every line, the exit status, what
to do on each failing line."""

from __future__ import annotations

import json

import pytest

from okyaku.cli import main
from okyaku.config import get_settings
from okyaku.llm import LLMConfig
from okyaku.llm.probe import run_checks
from tests.support.fixtures import llm_settings_for
from tests.support.openai_server import RecordedRequest, Reply, ScriptedOpenAIServer


def capable(request: RecordedRequest) -> Reply:
    """A model that calls tools when given some, answers JSON when asked, else counts."""
    body = request.body or {}
    if body.get("tools"):
        return Reply.tool_call("get_weather", {"city": "Paris"})
    if body.get("response_format"):
        return Reply.json_object({"city": "Paris", "temperature_c": 14, "sunny": False})
    return Reply.text("one two three four five", completion_tokens=5)


def config_for(server: ScriptedOpenAIServer, **overrides) -> LLMConfig:
    return LLMConfig.from_settings(llm_settings_for(server.base_url, **overrides))


def lines_by_check(report):
    return {line.check: line for line in report.lines}


def test_a_capable_ollama_passes_every_check():
    with ScriptedOpenAIServer(kind="ollama", ollama_version="0.6.8", ollama_num_ctx=8192) as server:
        server.responder = capable
        report = run_checks(config_for(server))
        schema_request = next(r for r in server.requests_to("chat") if r.body.get("response_format"))
    lines = lines_by_check(report)
    assert report.ok, report.lines
    assert [line.status for line in report.lines] == ["ok"] * 8
    assert "ollama 0.6.8" in lines["server reachable"].detail
    assert lines["embeddings"].detail == "nomic-embed-text: 768 dimensions"
    assert "get_weather" in lines["tool calls"].detail
    assert lines["context window"].detail.startswith("8192 tokens")
    assert "tokens/s" in lines["speed"].detail
    assert schema_request.body["response_format"]["type"] == "json_schema"


def test_a_model_under_another_tag_is_named_with_the_setting_to_use():
    models = ("llama3.1:8b", "nomic-embed-text:latest")
    with ScriptedOpenAIServer(kind="ollama", ollama_version="0.6.8", models=models, ollama_num_ctx=8192) as server:
        server.responder = capable
        report = run_checks(config_for(server))
        fixed = run_checks(config_for(server, ollama_model="llama3.1:8b"))
    chat = lines_by_check(report)["chat model"]
    assert not report.ok
    assert chat.status == "fail" and "llama3.1:8b" in chat.detail and "llama3.1:8b" in chat.fix
    assert fixed.ok, fixed.lines


def test_a_model_that_answers_in_text_and_a_small_context_fail_with_what_to_do():
    with ScriptedOpenAIServer(kind="ollama", ollama_version="0.6.8") as server:
        server.responder = lambda request: Reply.text("It is sunny in Paris.")
        report = run_checks(config_for(server, ollama_num_ctx=2048))
    lines = lines_by_check(report)
    assert not report.ok
    assert lines["chat model"].status == "ok"
    assert lines["tool calls"].status == "fail" and "instead of calling the tool" in lines["tool calls"].detail
    assert "agents" in lines["tool calls"].needed_by and "--chat-template-file" in lines["tool calls"].fix
    assert lines["JSON schema output"].status == "fail"
    assert lines["context window"].status == "fail" and "OLLAMA_CONTEXT_LENGTH" in lines["context window"].fix


def test_embeddings_a_server_does_not_serve(make_gateway):
    with ScriptedOpenAIServer(kind="llama.cpp") as server:
        server.responder = capable
        server.script(
            Reply.error(501, "This server does not support embeddings. Start it with `--embeddings`"),
            route="embeddings",
        )
        report = run_checks(config_for(server, llm_embedding_fallback_local=False))
    line = lines_by_check(report)["embeddings"]
    assert (line.status, report.ok) == ("fail", False)
    assert "--embeddings" in line.fix


def test_an_unreachable_server_is_one_failing_line(dead_llm_url):
    report = run_checks(LLMConfig.from_settings(llm_settings_for(dead_llm_url)))
    assert [(line.check, line.status) for line in report.lines] == [("server reachable", "fail")]
    assert "OLLAMA_BASE_URL" in report.lines[0].fix


@pytest.fixture
def cli_server(monkeypatch):
    with ScriptedOpenAIServer(kind="ollama", ollama_num_ctx=8192) as server:
        server.responder = capable
        monkeypatch.setenv("OLLAMA_BASE_URL", server.base_url)
        monkeypatch.setenv("LLM_TIMEOUT_S", "5")
        get_settings.cache_clear()
        yield server
    get_settings.cache_clear()


def test_the_command_prints_a_table_or_json_and_exits_by_the_result(cli_server, capsys):
    assert main(["ai", "check"]) == 0
    table = capsys.readouterr().out
    assert "OK    tool calls" in table and "every feature will work" in table
    assert main(["ai", "check", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["ok"] is True and body["server"]["kind"] == "ollama"
    cli_server.responder = lambda request: Reply.text("plain words")
    assert main(["ai", "check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  tool calls" in out and "-> use a model whose chat template calls tools" in out
