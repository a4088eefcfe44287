"""Weekly insights: figures from the CRM; the LLM (scripted OpenAI-compatible server, real SDK over
HTTP) words them, and a text with a number that is not one of the figures is replaced by the
templated narrative (degraded); so is an unreachable LLM."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from okyaku.anomalies.api import create_anomalies_app
from okyaku.anomalies.insights import FIGURES_BEGIN, FIGURES_END, invented_numbers, template_narrative
from okyaku.anomalies.service import AnomalyService
from okyaku.runtime import Runtime
from tests.support.openai_server import Reply


def figures_of(request: Any) -> dict[str, Any]:
    prompt = request.body["messages"][-1]["content"]
    return json.loads(prompt.split(FIGURES_BEGIN)[1].split(FIGURES_END)[0])  # type: ignore[no-any-return]


def faithful(request: Any) -> Reply:
    figures = figures_of(request)
    trends = figures["trends"]
    best = figures["top_performers"][0]
    text = (
        f"The team logged {trends['activities']['this_week']:.0f} activities and won "
        f"{trends['deals_won']['this_week']:.0f} deals worth {trends['won_value']['this_week']:,.0f}. "
        f"{best['name']} led with {best['deals_won']} won."
    )
    return Reply.json_object({"narrative": text})


def inventing(request: Any) -> Reply:
    figures = figures_of(request)
    return Reply.json_object(
        {"narrative": f"{figures['trends']['deals_won']['this_week']:.0f} deals won, a 37.5% jump in conversion."}
    )


def test_the_llm_words_the_figures_and_is_kept_when_every_number_is_one(
    tenant: Any, runtime: Runtime, llm: Any, openai_server: Any, week_with_activity: date
) -> None:
    openai_server.responder = faithful
    service = AnomalyService(runtime, llm)
    result = service.weekly(tenant.id, week_with_activity)
    assert result["narrative_source"] == "llm" and result["degraded"] is False
    client = TestClient(create_anomalies_app(service), headers={"Authorization": f"Bearer {tenant.org.api_key}"})
    (insight,) = client.get("/api/v1/ai/insights", params={"week": str(week_with_activity + timedelta(days=2))}).json()
    assert insight["narrative"] == "The team logged 5 activities and won 2 deals worth 42,500. Admin led with 2 won."
    figures = insight["figures"]
    assert figures["trends"]["deals_won"]["this_week"] == 2 and figures["trends"]["won_value"]["this_week"] == 42500
    assert figures["top_performers"][0] == {"name": "Admin", "deals_won": 2, "won_value": 42500.0, "activities": 5}
    assert figures["trends"]["win_rate_percent"]["this_week"] == 100.0
    (request,) = openai_server.requests_to("chat")
    assert figures_of(request) == figures  # the LLM was given the stored figures, nothing else


def test_a_number_not_in_the_figures_brings_back_the_template(
    tenant: Any, runtime: Runtime, llm: Any, openai_server: Any, week_with_activity: date
) -> None:
    openai_server.responder = inventing
    result = AnomalyService(runtime, llm).weekly(tenant.id, week_with_activity)
    assert result["narrative_source"] == "template" and result["degraded"] is True
    (insight,) = AnomalyService(runtime).list_insights(tenant.id, week=week_with_activity)
    assert "37.5" in (insight.rejected_reason or "")
    assert insight.narrative == template_narrative(insight.figures)
    assert "2 deals were won for 42,500" in insight.narrative


def test_an_unreachable_llm_gives_the_template_and_says_degraded(
    tenant: Any, runtime: Runtime, make_gateway: Any, dead_llm_url: str, week_with_activity: date
) -> None:
    result = AnomalyService(runtime, make_gateway(dead_llm_url)).weekly(tenant.id, week_with_activity)
    assert result["degraded"] is True and result["narrative_source"] == "template"
    (insight,) = AnomalyService(runtime).list_insights(tenant.id, week=week_with_activity)
    assert insight.rejected_reason.startswith("LLM unavailable")  # type: ignore[union-attr]
    assert "The team logged 5 activities this week" in insight.narrative


@pytest.mark.parametrize(
    ("text", "invented"),
    [
        ("Won 2 deals worth 42,500 (41.7% of the target).", []),
        ("Won 2 deals worth 42,500 (42% of the target).", []),
        ("Week of 2026-11-23: 3 deals need attention.", []),
        ("Won 3 deals.", []),  # 3: the number of deals needing attention listed
        ("Won 7 deals worth 42,501.", ["7", "42,501"]),
        ("A 41.67% share.", []),
        ("A 41.68% share.", ["41.68"]),
    ],
)
def test_the_number_check(text: str, invented: list[str]) -> None:
    figures = {
        "week_start": "2026-11-23",
        "trends": {"deals_won": {"this_week": 2.0}, "won_value": {"this_week": 42500.0}, "share": 41.6667},
        "deals_needing_attention": [{"deal": "A"}, {"deal": "B"}, {"deal": "C"}],
    }
    assert invented_numbers(text, figures) == invented
