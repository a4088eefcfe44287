"""``okyaku ai eval`` on an organization's own data: generated questions of every family, judged
against answers computed from the records, reported per family with latency per path."""

from __future__ import annotations

import json

import pytest

from okyaku.cli import main
from okyaku.config import get_settings
from tests.integration.chat_support import FixedClock, build_crm


@pytest.fixture
def cli_env(monkeypatch, dead_llm_url, pg):
    monkeypatch.setenv("OLLAMA_BASE_URL", dead_llm_url)
    monkeypatch.setenv("LLM_MAX_RETRIES", "0")
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_ai_eval_reports_each_family_and_the_latency_of_each_path(cli_env, tenant, pipeline, runtime, capsys):
    build_crm(tenant, pipeline, runtime, FixedClock().now)
    assert main(["ai", "eval", "--org-key", tenant.org.api_key, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["families"]) >= 15
    assert report["totals"].get("wrong", 0) == 0
    assert report["totals"]["right"] >= 0.9 * len(report["questions"])
    assert report["latency_ms"]["parser"]["n"] >= 0.9 * len(report["questions"])
    assert report["latency_ms"]["parser"]["p95"] >= report["latency_ms"]["parser"]["p50"] > 0
    closing = [q for q in report["questions"] if q["family"] == "deals closing this month"]
    assert closing and all(q["verdict"] == "right" and q["planner"] == "parser" for q in closing)


def test_ai_eval_prints_a_table_for_the_families_asked(cli_env, tenant, pipeline, runtime, capsys):
    build_crm(tenant, pipeline, runtime, FixedClock().now)
    assert main(["ai", "eval", "--org-key", tenant.org.api_key, "--no-llm", "--family", "win rate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("model: (none: the built-in parser alone);")
    lines = out.splitlines()
    assert lines[1].split() == ["family", "right", "wrong", "refused"]
    family, right, wrong, _refused = lines[2].rsplit(maxsplit=3)
    assert family == "win rate" and int(right) >= 5 and wrong == "0"
    assert lines[3].split()[:1] == ["all"] and len(lines[3].split()) == 4
