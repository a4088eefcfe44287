"""Every function that calls the LLM fits its worst case into its Timeout, as deployed: the test
reads template.yaml's environment (Globals, then the function's own) and the triggers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from okyaku.config import Settings
from okyaku.llm import LLMConfig
from okyaku.llm.budget import (
    HTTP_LIMIT_S,
    Call,
    config_from_environment,
    invocation_worst_case_s,
    operation_worst_case_s,
)
from okyaku.local.template import load_template_dict

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template_dict(ROOT / "template.yaml")

# What one invocation asks of the model, per trigger, from the code that makes the calls.
PLANS: dict[tuple[str, str], list[Call]] = {
    # content/service.py: one structured answer; shortening only within what is left of it
    ("ContentFunction", "http"): [Call("structured")],
    # chat/planner.py: a plan (tool call) and its phrasing
    ("ChatFunction", "http"): [Call("tools"), Call("chat")],
    # mcp/: query_crm runs a chat turn
    ("McpFunction", "http"): [Call("tools"), Call("chat")],
    # recommendations/explain.py: a card's words
    ("RecommendationsFunction", "http"): [Call("structured")],
    # predictions/explain_llm.py: a score's or a forecast's explanation
    ("ScoringFunction", "http"): [Call("structured")],
    ("ForecastingFunction", "http"): [Call("structured")],
    # anomalies/insights.py: a week's narrative per organization message
    ("AnomaliesFunction", "queue"): [Call("structured")],
    ("AnomaliesFunction", "http"): [Call("structured")],
}


def _function(name: str) -> dict[str, Any]:
    return TEMPLATE["Resources"][name]["Properties"]


def _environment(name: str) -> dict[str, Any]:
    merged = dict(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    merged.update((_function(name).get("Environment") or {}).get("Variables") or {})
    return merged


def _timeout(name: str) -> float:
    return float(_function(name).get("Timeout", TEMPLATE["Globals"]["Function"]["Timeout"]))


def _queue_batch(name: str) -> int:
    return max(
        int(event["Properties"].get("BatchSize", 10))
        for event in _function(name)["Events"].values()
        if event["Type"] == "SQS"
    )


def _has_http(name: str) -> bool:
    return any(event["Type"] == "HttpApi" for event in _function(name)["Events"].values())


@pytest.mark.parametrize(("function", "trigger"), sorted(PLANS), ids=lambda v: str(v))
def test_one_invocation_fits_its_timeout(function, trigger):
    config = config_from_environment(_environment(function))
    limit = min(_timeout(function), HTTP_LIMIT_S) if trigger == "http" else _timeout(function)
    if trigger == "http":
        assert _has_http(function)
    worst = invocation_worst_case_s(config, PLANS[(function, trigger)])
    assert worst <= limit, (
        f"{function} ({trigger}): up to {worst:.0f} s in the LLM (LLM_TIMEOUT_S={config.timeout_s}, "
        f"LLM_MAX_RETRIES={config.max_retries}) > its {limit:.0f} s"
    )


def test_a_conversation_batch_of_one_chunk_texts_fits_the_queue_timeout():
    config = config_from_environment(_environment("ConversationFunction"))
    batch = _queue_batch("ConversationFunction")
    worst = invocation_worst_case_s(config, [Call("structured", count=batch)])
    assert worst <= _timeout("ConversationFunction"), f"{batch} texts: {worst:.0f} s"


def test_an_agent_run_stops_inside_its_timeout():
    environment = _environment("AgentsFunction")
    config = config_from_environment(environment)
    settings = Settings(**{k.lower(): v for k, v in environment.items() if isinstance(v, str)})
    # agents/framework.py stops starting calls after the run's time budget; the call under way finishes
    worst = settings.ai_agent_time_budget_s + invocation_worst_case_s(config, [Call("tools")])
    assert worst <= _timeout("AgentsFunction"), f"{worst:.0f} s"


def test_every_function_that_sets_llm_settings_is_checked():
    checked = {name for name, _ in PLANS} | {"ConversationFunction", "AgentsFunction"}
    setting = {
        name
        for name, resource in TEMPLATE["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        and any(
            k.startswith("LLM_") for k in ((resource["Properties"].get("Environment") or {}).get("Variables") or {})
        )
    }
    assert setting <= checked, f"not checked: {sorted(setting - checked)}"


# --- the arithmetic -------------------------------------------------------------------------------


def test_worst_case_counts_attempts_repair_rounds_and_backoff():
    config = dataclasses.replace(LLMConfig(), timeout_s=10.0, max_retries=2, backoff_max_s=1.0)
    assert operation_worst_case_s(config, "chat") == 3 * 10 + 2 * 1
    assert operation_worst_case_s(config, "structured") == 2 * (3 * 10 + 2 * 1)
    assert operation_worst_case_s(config, "tools") == 64
    cold = invocation_worst_case_s(config, [Call("tools"), Call("chat")])
    assert cold == config.health_timeout_s + 64 + 32


def test_the_defaults_would_not_fit_an_http_function():
    """Why the template sets LLM_* per function: 120 s attempts with two retries."""
    assert invocation_worst_case_s(LLMConfig(), [Call("structured")]) > HTTP_LIMIT_S


def test_template_environment_values_become_the_config():
    config = config_from_environment({"LLM_TIMEOUT_S": "8", "LLM_MAX_RETRIES": "0", "DATABASE_URL": {"Ref": "X"}})
    assert (config.timeout_s, config.max_retries) == (8.0, 0)
