"""Explanations are written from the factors and never contradict them; a failing writer costs
nothing but the words."""

from __future__ import annotations

import re

import numpy as np
import pytest

from okyaku.predictions.explain import (
    Explanation,
    ExplanationRequest,
    TemplateWriter,
    contradictions,
    factor_phrase,
    write_explanation,
)
from okyaku.predictions.factors import Factor

FEATURES = [
    ("meetings_30d", "meetings in the last 30 days", "engagement"),
    ("days_since_last_activity", "days since the last activity", "timing"),
    ("company_industry", "company industry", "fit"),
    ("seniority", "seniority of the job title", "fit"),
    ("overdue_tasks", "overdue tasks", "timing"),
    ("emails_90d", "emails in the last 90 days", "engagement"),
]


def random_request(rng: np.random.Generator, target: str = "lead_score") -> ExplanationRequest:
    chosen = rng.choice(len(FEATURES), size=int(rng.integers(0, len(FEATURES) + 1)), replace=False)
    factors = [
        Factor(
            FEATURES[i][0],
            FEATURES[i][1],
            FEATURES[i][2],
            int(rng.integers(0, 60)),
            3,
            float(rng.choice([-1, 1]) * rng.uniform(0.5, 20)),
        )
        for i in chosen
    ]
    return ExplanationRequest(
        target=target,  # type: ignore[arg-type]
        score=float(rng.uniform(1, 99)),
        method=str(rng.choice(["model", "prior"])),
        typical_score=20.0,
        factors=factors,
        algorithm="logistic",
    )


def split_sentences(text: str) -> tuple[str, str]:
    raising = re.search(r"Raising it: (.*?)\.(?: Lowering|$)", text)
    lowering = re.search(r"Lowering it: (.*?)\.$", text)
    return (raising.group(1) if raising else ""), (lowering.group(1) if lowering else "")


@pytest.mark.parametrize("target", ["lead_score", "churn_risk", "deal_forecast"])
def test_the_template_never_contradicts_the_factors(target):
    rng = np.random.default_rng(3)
    for _ in range(300):
        request = random_request(rng, target)
        explanation = TemplateWriter().write(request)
        raising, lowering = split_sentences(explanation.text)
        for factor in request.factors:
            phrase = factor_phrase(factor)
            if factor.impact > 0:
                assert phrase in raising and phrase not in lowering
            else:
                assert phrase in lowering and phrase not in raising
        assert f"{request.score:.0f}/100" in explanation.text
        assert explanation.recommendations
        assert not contradictions(explanation, request, {f.feature: f.direction for f in request.factors})


def test_recommendations_address_what_works_against_the_customer():
    silence = Factor("days_since_last_activity", "days since the last activity", "timing", 75, 10, 12.0)
    churn = ExplanationRequest("churn_risk", 64.0, "model", 12.0, [silence], level="high")
    assert TemplateWriter().write(churn).recommendations[0] == "Reach out: the last touch was 75 days ago."
    # For a lead the same silence lowering the score is what to act on; raising it is not.
    lowering = Factor("days_since_last_activity", "days since the last activity", "timing", 75, 10, -12.0)
    lead = ExplanationRequest("lead_score", 8.0, "model", 12.0, [lowering])
    assert "75 days" in TemplateWriter().write(lead).recommendations[0]
    helping = ExplanationRequest("lead_score", 40.0, "model", 12.0, [silence])
    assert "75 days" not in " ".join(TemplateWriter().write(helping).recommendations)


def test_the_prior_says_it_is_a_prior():
    request = ExplanationRequest("lead_score", 22.0, "prior", 10.0, [], prior_reason="50 labelled examples")
    text = TemplateWriter().write(request).text
    assert "not yet enough history" in text and "50 labelled examples" in text


class Broken:
    def write(self, request):
        raise ConnectionError("LLM unreachable")


class Silent:
    def write(self, request):
        return None


class Working:
    def write(self, request):
        return Explanation(f"Score {request.score:.0f}.", ["Call them."], "llm")


def test_a_failing_writer_falls_back_to_the_template_and_says_degraded():
    request = random_request(np.random.default_rng(1))
    for writer in (Broken(), Silent(), None):
        explanation, degraded = write_explanation(request, writer)
        assert degraded and explanation.source == "template"
        assert explanation.text == TemplateWriter().write(request).text
    explanation, degraded = write_explanation(request, Working())
    assert not degraded and explanation.source == "llm"
    explanation, degraded = write_explanation(request, TemplateWriter())
    assert not degraded and explanation.source == "template"


def test_contradictions_are_found():
    up = Factor("meetings_30d", "meetings", "engagement", 3, 0, 9.0)
    request = ExplanationRequest("lead_score", 61.0, "model", 20.0, [up])
    text = Explanation("The score is 61.", [], "llm")
    assert contradictions(text, request, {"meetings_30d": "down"})
    assert contradictions(text, request, {"company_industry": "up"})  # not a factor at all
    assert contradictions(Explanation("Looks good.", [], "llm"), request, {})  # no score stated
    assert not contradictions(text, request, {"meetings_30d": "up"})
