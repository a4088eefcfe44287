"""Each function served by the local runner reads its own template environment (Globals and its own
Environment), as on Lambda: at its cold start and in every invocation, in the runner and in its HTTP
worker processes. What the process sets still wins, and nothing is left behind after the stop."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from okyaku.config import Settings, get_settings
from okyaku.local.lambda_host import template_environment
from okyaku.local.runner import LocalRunner

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FUNCTION = ROOT / "tests" / "data" / "runner" / "functions" / "settings"
PROCESS_URL = "http://process-wins.example/v1"
CONNECTIONS = 16  # per route, each on a connection of its own: both processes answer (1 in 2^47 not)
DEFAULT_TIMEOUT = Settings.model_fields["llm_timeout_s"].default
DEFAULT_RETRIES = Settings.model_fields["llm_max_retries"].default


def write_template(directory: Path) -> Path:
    def function(name: str, path: str, own: str, events: str = "") -> str:
        return (
            f"  {name}:\n    Type: AWS::Serverless::Function\n    Properties:\n"
            f"      CodeUri: {SETTINGS_FUNCTION}\n      Handler: app.handler\n{own}"
            f"      Events:\n        Http: {{Type: HttpApi, Properties: {{Path: {path}, Method: GET}}}}\n{events}"
        )

    template = directory / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Parameters:\n  OllamaBaseUrl: {Type: String, Default: 'http://template.example/v1'}\n"
        "Globals: {Function: {Runtime: python3.11, Environment: {Variables: "
        "{LLM_TIMEOUT_S: '30', OLLAMA_BASE_URL: !Ref OllamaBaseUrl}}}}\n"
        "Resources:\n"
        + function(
            "Slow",
            "/slow",
            "      Environment: {Variables: {LLM_TIMEOUT_S: '60', LLM_MAX_RETRIES: '1'}}\n",
            "        Hourly: {Type: Schedule, Properties: {Schedule: rate(1 hour), Name: SlowHourly}}\n",
        )
        + function("Quick", "/quick", "      Environment: {Variables: {LLM_TIMEOUT_S: '12', LLM_MAX_RETRIES: '0'}}\n")
        + function("Plain", "/plain", "")
    )
    return template


@pytest.fixture
def process_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process sets OLLAMA_BASE_URL (as a user would) and no LLM_* variable."""
    monkeypatch.setenv("OLLAMA_BASE_URL", PROCESS_URL)
    for name in ("LLM_TIMEOUT_S", "LLM_MAX_RETRIES", "CONSOLE_SESSION_SECRET"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def assert_process_settings_untouched() -> None:
    assert "LLM_TIMEOUT_S" not in os.environ and "LLM_MAX_RETRIES" not in os.environ
    settings = get_settings()
    assert (settings.llm_timeout_s, settings.llm_max_retries) == (DEFAULT_TIMEOUT, DEFAULT_RETRIES)
    assert settings.ollama_base_url == PROCESS_URL


def test_each_function_reads_its_own_environment_in_every_process_and_trigger(
    tmp_path: Path, process_environment: None
) -> None:
    expected = {
        "Slow": {"llm_timeout_s": 60.0, "llm_max_retries": 1, "ollama_base_url": PROCESS_URL},
        "Quick": {"llm_timeout_s": 12.0, "llm_max_retries": 0, "ollama_base_url": PROCESS_URL},
        "Plain": {"llm_timeout_s": 30.0, "llm_max_retries": DEFAULT_RETRIES, "ollama_base_url": PROCESS_URL},
    }
    with LocalRunner(write_template(tmp_path), port=0, http_workers=2) as runner:
        processes: set[int] = set()
        for function, path in (("Slow", "/slow"), ("Quick", "/quick"), ("Plain", "/plain")):
            for _ in range(CONNECTIONS):
                answer = httpx.get(f"{runner.url}{path}", timeout=30)  # a new connection each
                assert answer.status_code == 200, answer.text
                seen: dict[str, Any] = answer.json()
                assert seen["function"] == function
                assert seen["import"] == seen["call"] == expected[function]
                processes.add(seen["pid"])
        assert len(processes) == 2  # the runner and its worker both served every function
        scheduled = json.loads(runner.fire_schedule("SlowHourly")["body"])
        assert scheduled["call"] == expected["Slow"]
        assert_process_settings_untouched()  # the test's own thread is no function's
    assert_process_settings_untouched()


def test_the_projects_functions_each_get_their_own_llm_budget(process_environment: None) -> None:
    """The template gives conversation and chat different LLM_* values: each function's runtime
    (built at its cold start) has its own, not the first function's."""
    with LocalRunner(ROOT / "template.yaml", port=0) as runner:
        own = {
            function: template_environment(runner.template, runner.template.functions[function])
            for function in ("ConversationFunction", "ChatFunction")
        }
        assert own["ConversationFunction"]["LLM_TIMEOUT_S"] != own["ChatFunction"]["LLM_TIMEOUT_S"]
        for function, variables in own.items():
            host = runner.functions[function]
            _ = host.handler  # its cold start
            settings: Settings = host.module.runtime.settings  # type: ignore[union-attr]
            assert settings.llm_timeout_s == float(variables["LLM_TIMEOUT_S"]), function
            assert settings.llm_max_retries == int(variables["LLM_MAX_RETRIES"]), function
            assert settings.ollama_base_url == PROCESS_URL, function
        assert_process_settings_untouched()
    assert_process_settings_untouched()
