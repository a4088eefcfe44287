"""Words for a score, written from its factors and never changing its number.

``ExplanationWriter`` is the seam: the templated writer below always works; an LLM-backed writer
(``explain_llm``) is tried first where one is configured, and whatever it returns is checked
against the factors before it is used."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from okyaku.predictions.factors import Factor

logger = logging.getLogger(__name__)

PredictionTarget = Literal["lead_score", "churn_risk", "deal_forecast"]

_NOUN = {"lead_score": "lead score", "churn_risk": "churn risk", "deal_forecast": "win probability"}
_SUBJECT = {"lead_score": "leads", "churn_risk": "customers", "deal_forecast": "deals"}
_OUTCOME = {"lead_score": "converted", "churn_risk": "churned", "deal_forecast": "were won"}


@dataclass(frozen=True)
class ExplanationRequest:
    target: PredictionTarget
    score: float  # 0-100
    method: str  # model | prior
    typical_score: float
    factors: Sequence[Factor]
    subject: str = ""  # "Ann Lee", "Acme renewal"
    level: str | None = None
    algorithm: str = ""
    prior_reason: str = ""

    def raising(self) -> list[Factor]:
        return [f for f in self.factors if f.impact > 0]

    def lowering(self) -> list[Factor]:
        return [f for f in self.factors if f.impact < 0]


@dataclass(frozen=True)
class Explanation:
    text: str
    recommendations: list[str] = field(default_factory=list)
    source: Literal["llm", "template"] = "template"


class ExplanationWriter(Protocol):
    def write(self, request: ExplanationRequest) -> Explanation | None:
        """An explanation, or None when this writer cannot give one now."""


# --- the template ------------------------------------------------------------------------------


def factor_phrase(factor: Factor) -> str:
    value = "unknown" if factor.value is None else factor.value
    if isinstance(value, bool):
        value = "yes" if value else "no"
    sign = "+" if factor.impact > 0 else "\u2212"
    return f"{factor.label} = {value} ({sign}{abs(factor.impact):.1f} pts)"


class TemplateWriter:
    """Plain sentences from the factors: every factor with a positive impact is said to raise the
    score, every one with a negative impact to lower it, with its points."""

    def write(self, request: ExplanationRequest) -> Explanation:
        return Explanation(template_text(request), template_recommendations(request), "template")


def template_text(request: ExplanationRequest) -> str:
    noun = _NOUN[request.target]
    level = f" ({request.level})" if request.level else ""
    subject = f" for {request.subject}" if request.subject else ""
    parts = [f"The {noun}{subject} is {request.score:.0f}/100{level}."]
    if request.method == "model":
        similar = f"{_SUBJECT[request.target]} {_OUTCOME[request.target]}"
        parts.append(
            f"It comes from a model trained on this organization's own history ({request.algorithm or 'calibrated'}"
            f", calibrated): about {request.score:.0f} in 100 similar {similar}."
        )
    else:
        reason = f" ({request.prior_reason})" if request.prior_reason else ""
        parts.append(
            f"There is not yet enough history to train a model{reason}, so transparent rules give it: "
            "a starting rate plus or minus the points of each rule below."
        )
    parts.append(f"A typical one scores {request.typical_score:.0f}.")
    raising, lowering = request.raising(), request.lowering()
    if raising:
        parts.append("Raising it: " + "; ".join(factor_phrase(f) for f in raising) + ".")
    if lowering:
        parts.append("Lowering it: " + "; ".join(factor_phrase(f) for f in lowering) + ".")
    if not raising and not lowering:
        parts.append("No single factor moves it noticeably away from the typical score.")
    return " ".join(parts)


def _bad_for_outcome(request: ExplanationRequest) -> list[Factor]:
    """The factors working against the customer's interest: lowering a lead or deal score, raising churn risk."""
    if request.target == "churn_risk":
        return request.raising()
    return request.lowering()


def template_recommendations(request: ExplanationRequest, limit: int = 3) -> list[str]:
    advice: list[str] = []
    for factor in _bad_for_outcome(request):
        line = _advice_for(factor, request)
        if line and line not in advice:
            advice.append(line)
        if len(advice) >= limit:
            break
    if not advice:
        advice.append(
            "Keep the current cadence: nothing stands out against this score."
            if request.target != "churn_risk"
            else "Keep the relationship warm: nothing currently points to churn."
        )
    return advice


def _advice_for(factor: Factor, request: ExplanationRequest) -> str | None:
    name, value = factor.feature, factor.value
    if name == "days_since_last_activity":
        return f"Reach out: the last touch was {value} days ago." if value is not None else "Log a first touch."
    if name.startswith("meetings_"):
        return "Book a meeting: meetings are what moves similar records forward."
    if name.startswith("calls_"):
        return "Call: a conversation tends to move this score more than e-mail."
    if name.startswith(("emails_", "activities_", "activity_trend")):
        return "Increase touches: activity has dropped compared with what converts."
    if name in ("overdue_tasks", "open_tasks"):
        return "Clear the overdue tasks on this record."
    if name == "days_in_stage":
        return f"The deal has sat in its stage for {value} days: agree a next step or re-qualify it."
    if name == "days_past_expected_close":
        return "The expected close date has passed: confirm the timeline with the buyer and update it."
    if name == "has_contact":
        return "Add the buying contact to the deal."
    if name == "stage" or name == "stage_probability":
        return "Advance the deal to its next stage with a concrete commitment from the buyer."
    if factor.group == "fit":
        return f"Qualify fit before investing more time ({factor.label}: {value})."
    return None


# --- choosing and checking -----------------------------------------------------------------------


def contradictions(explanation: Explanation, request: ExplanationRequest, cited: dict[str, str]) -> list[str]:
    """What an explanation claims that the factors do not support: ``cited`` maps the features it
    relies on to the direction it gives them ("up" raises the score, "down" lowers it)."""
    known = {f.feature: f.direction for f in request.factors}
    problems = [
        f"{name}: said to go {direction}, the model says {known.get(name, 'nothing')}"
        for name, direction in cited.items()
        if known.get(name) != direction
    ]
    if f"{request.score:.0f}" not in explanation.text:
        problems.append("the explanation does not state the score")
    return problems


def write_explanation(request: ExplanationRequest, writer: ExplanationWriter | None) -> tuple[Explanation, bool]:
    """The writer's explanation when it gives one, else the template; the flag says "degraded"
    (an LLM writer was wanted and could not be used)."""
    template = TemplateWriter()
    if writer is None or isinstance(writer, TemplateWriter):
        return template.write(request), writer is None
    try:
        written = writer.write(request)
    except Exception as error:  # a writer failing must never cost the caller the score
        logger.warning("explanation writer failed; using the template: %s", error)
        written = None
    if written is None:
        return template.write(request), True
    return written, False


def request_from_payload(payload: dict[str, Any]) -> ExplanationRequest:
    """The explanation request a stored score was made from (its factors are stored verbatim)."""
    factors = [
        Factor(
            f["feature"],
            f["label"],
            f["group"],
            f.get("value"),
            f.get("typical"),
            float(f["impact"]),
            f.get("log_odds"),
        )
        for f in payload.get("factors", [])
    ]
    return ExplanationRequest(
        target=payload["target"],
        score=float(payload["score"]),
        method=payload["method"],
        typical_score=float(payload.get("typical_score", 0.0)),
        factors=factors,
        level=payload.get("level"),
        algorithm=payload.get("algorithm", ""),
        prior_reason=payload.get("basis", ""),
    )


def with_explanation(payload: dict[str, Any]) -> dict[str, Any]:
    """A stored payload with its words: batch scores store only the factors, and the template
    renders the same text from them whenever they are read."""
    if payload.get("explanation") is not None or "factors" not in payload:
        return payload
    written = TemplateWriter().write(request_from_payload(payload))
    return {**payload, "explanation": written.text, "recommendations": written.recommendations}
