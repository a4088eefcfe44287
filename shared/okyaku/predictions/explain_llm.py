"""Explanations written by the LLM (Ollama through ``okyaku.llm``) from a score's factors.

The LLM gets the score and the factors and returns words only. Its answer is checked before it
is used: every factor it says raises or lowers the score must do so, it must state the score,
and it may not use a number it was not given. Anything else (unreachable, slow, invalid,
contradicting) and the caller falls back to the template."""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from okyaku.config import Settings
from okyaku.llm.prompts import PromptTemplate
from okyaku.predictions.explain import Explanation, ExplanationRequest, contradictions

if TYPE_CHECKING:
    from okyaku.llm.gateway import LLMGateway

logger = logging.getLogger(__name__)

TIMEOUT_S = 20.0  # a score is never held back long for its words
FACTS_BEGIN, FACTS_END = "<facts>", "</facts>"
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


class ExplanationDraft(BaseModel):
    explanation: str = Field(min_length=1, max_length=1500, description="2-4 sentences for a sales user")
    recommendations: list[str] = Field(default_factory=list, max_length=5, description="Next actions, one line each")
    raising: list[str] = Field(default_factory=list, description="Feature names the explanation says raise the score")
    lowering: list[str] = Field(default_factory=list, description="Feature names it says lower the score")


EXPLAIN = PromptTemplate(
    name="predictions.explain",
    version="1",
    system=(
        "You explain a CRM prediction to a sales user. A statistical model computed the score and "
        "the factors; you only put them into plain words. Use only the facts given. Never change the "
        "score, never invent numbers, names or events. State the score as N/100. A factor with a "
        "positive impact raises the score, a negative one lowers it. For churn risk a higher score is "
        "worse. List in 'raising' and 'lowering' the feature names you mention, by their direction."
    ),
    user=(f"Explain this $noun in 2-4 sentences and suggest up to 3 next actions.\n{FACTS_BEGIN}\n$facts\n{FACTS_END}"),
    output=ExplanationDraft,
)

_NOUNS = {"lead_score": "lead score", "churn_risk": "churn risk", "deal_forecast": "deal win probability"}


def facts(request: ExplanationRequest) -> dict[str, Any]:
    return {
        "target": request.target,
        "subject": request.subject,
        "score": round(request.score),
        "level": request.level,
        "method": "trained model" if request.method == "model" else "rules (not enough history yet)",
        "typical_score": round(request.typical_score),
        "factors": [
            {
                "feature": f.feature,
                "label": f.label,
                "value": f.value,
                "typical": f.typical,
                "impact_points": round(f.impact, 1),
                "direction": "raises" if f.impact > 0 else "lowers",
            }
            for f in request.factors
        ],
    }


def _canonical(number: float) -> str:
    return (f"{number:f}").rstrip("0").rstrip(".")


def _numbers(text: str, *, with_rounding: bool = False) -> set[str]:
    """The numbers in ``text`` ("12.50" and "12.5" alike); with their whole-number roundings too."""
    found = set()
    for raw in _NUMBER.findall(text):
        value = float(raw.replace(",", "."))
        found.add(_canonical(value))
        if with_rounding:
            found.add(_canonical(round(value)))
    return found


class LLMExplanationWriter:
    """An ``ExplanationWriter`` backed by the LLM gateway; returns None rather than raising."""

    def __init__(self, gateway: LLMGateway, *, timeout_s: float = TIMEOUT_S) -> None:
        self.gateway = gateway
        self.timeout_s = timeout_s

    def write(self, request: ExplanationRequest) -> Explanation | None:
        given = facts(request)
        messages = EXPLAIN.render(noun=_NOUNS[request.target], facts=json.dumps(given, ensure_ascii=False))
        try:
            result = self.gateway.sync.chat_structured(
                messages, ExplanationDraft, timeout_s=self.timeout_s, max_tokens=500, operation=EXPLAIN.id
            )
        except Exception as error:  # unreachable, breaker open, invalid output: the template answers
            logger.info("LLM explanation unavailable: %s", error)
            return None
        draft = result.value
        explanation = Explanation(draft.explanation.strip(), [r.strip() for r in draft.recommendations][:3], "llm")
        cited = {name: "up" for name in draft.raising} | {name: "down" for name in draft.lowering}
        problems = contradictions(explanation, request, cited)
        given_text = json.dumps(given) + " " + " ".join(f.label for f in request.factors)
        allowed = _numbers(given_text, with_rounding=True) | {"100"}
        invented = _numbers(" ".join([explanation.text, *explanation.recommendations])) - allowed
        if invented:
            problems.append(f"numbers not in the facts: {sorted(invented)}")
        if problems:
            logger.warning("LLM explanation rejected (%s): %s", EXPLAIN.id, "; ".join(problems))
            return None
        return explanation


def llm_writer_from_settings(settings: Settings) -> LLMExplanationWriter:
    from okyaku.llm.gateway import LLMGateway

    return LLMExplanationWriter(LLMGateway.from_settings(settings))
