"""Words for a card: why it was made and what to say, written from its facts.

The template always works and says only what the facts say. An LLM writer (Ollama through
``okyaku.llm``) is tried first where one is configured: it gets the card's facts and the RAG
context of the record, and returns reasoning plus suggested content (a draft email for the
email-like types, talking points for the others). Its answer is checked before it is used: it
may cite only facts the card has, and use no number that is in neither the facts nor the
context; anything else (unreachable, invalid, unfaithful) and the template answers, with
``degraded: true``."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, Field

from okyaku.llm.prompts import PromptTemplate

if TYPE_CHECKING:
    from okyaku.llm.gateway import LLMGateway

logger = logging.getLogger(__name__)

TIMEOUT_S = 20.0
FACTS_BEGIN, FACTS_END = "<facts>", "</facts>"
CONTEXT_BEGIN, CONTEXT_END = "<context>", "</context>"
EMAIL_TYPES = ("send_email", "send_proposal", "re_engage", "follow_up")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


@dataclass(frozen=True)
class CardText:
    """What ``explain`` says about a card."""

    reasoning: str
    talking_points: list[str] = field(default_factory=list)
    draft_email: dict[str, str] | None = None
    source: Literal["llm", "template"] = "template"
    cited_facts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CardForWords:
    type: str
    rule: str
    title: str
    subject: str
    facts: dict[str, Any]
    ranking: dict[str, Any]
    context: str = ""  # the RAG context of the record


class CardWriter(Protocol):
    def write(self, card: CardForWords) -> CardText | None:
        """Words for the card, or None when this writer cannot give them now."""


# --- the template --------------------------------------------------------------------------------

_REASONS = {
    "deal_no_touch": "Nothing has been logged on this deal or with its contact for {days_since_last_touch} days "
    "(the limit is {threshold_days}); deals that go quiet this long tend to slip.",
    "deal_past_close_date": "The expected close date ({expected_close_date}) passed {days_past_close_date} days ago "
    "and the deal is still open: the forecast counts on a date that no longer holds.",
    "deal_stage_stalled": "The deal has been in {stage} for {days_in_stage} days; deals here typically move on "
    "after {typical_days_in_stage} days ({typical_basis}).",
    "proposal_not_sent": "The deal is in {stage} ({days_in_stage} days) and no outbound email about a proposal, "
    "quote or pricing is logged on it.",
    "overdue_tasks": "{overdue_tasks} open task(s) are past their due date; the oldest, '{oldest_overdue_task}', "
    "was due on {oldest_due_date} ({days_overdue} days ago).",
    "hot_lead_unattended": "The lead score is {lead_score}/100 (hot from {hot_from}) and a hot lead nobody is "
    "working cools off (has an owner: {has_owner}; open tasks: {open_tasks}).",
    "hot_lead_no_touch": "The lead score is {lead_score}/100 and nothing has been logged for {days_since_last_touch} "
    "days (the limit for hot leads is {threshold_days}).",
    "churn_risk_rising": "The churn risk rose from {churn_risk_before} to {churn_risk} over the last "
    "{lookback_days} days.",
    "re_engage_quiet": "After {past_activities} logged activities, nothing for {days_since_last_touch} days "
    "(quiet from {threshold_days}) and no open deal.",
}


def _yes_no(value: Any) -> Any:
    return ("yes" if value else "no") if isinstance(value, bool) else value


def ranking_sentence(ranking: dict[str, Any]) -> str:
    return (
        f"Ranked by expected value {ranking['expected_value']:,.0f}: value {ranking['value']:,.0f} "
        f"({ranking['value_source']}) x uplift {ranking['uplift']} x severity {ranking['severity']} "
        f"x (0.5 + score {ranking['score']}, {ranking['score_source']}) x urgency {ranking['urgency']} "
        f"x feedback {ranking['feedback']} / (1 + effort {ranking['effort_hours']} h)."
    )


def reason_sentence(rule: str, facts: dict[str, Any]) -> str:
    """One sentence, from the card's facts only (no LLM): why the rule fired."""
    shown = {k: _yes_no(v) for k, v in facts.items()}
    try:
        return _REASONS[rule].format(**shown)
    except (KeyError, IndexError):
        return "; ".join(f"{k}: {v}" for k, v in shown.items() if k != "action" and v is not None) + "."


def _due(days: Any) -> str:
    days = int(days or 1)
    return "tomorrow" if days == 1 else f"in {days} days"


def describe_action(action: dict[str, Any] | None) -> str:
    """What applying the card writes, in words (the approval queue shows the same change field by field)."""
    action = action or {}
    kind = action.get("kind")
    if kind == "task":
        priority = action.get("priority", "normal")
        return f"Creates the task '{action.get('title')}', due {_due(action.get('due_in_days'))} ({priority} priority)."
    if kind == "note":
        return "Adds a note to the record."
    if kind == "email":
        return f"Drafts the email '{action.get('subject')}' to the contact; it is sent once approved."
    if kind == "stage":
        return f"Moves the deal to the stage {action.get('stage_name') or 'after this one'}."
    if kind == "task_due":
        return f"Moves the due date of the task '{action.get('title')}' to {_due(action.get('due_in_days'))}."
    return "Nothing to apply: act on it yourself, then mark it done."


def suggested_content(action: dict[str, Any] | None) -> dict[str, Any] | None:
    """The content the rule suggests (an email's subject and body, a task's title, a note), if any."""
    action = action or {}
    kind = action.get("kind")
    if kind == "email":
        return {"kind": "email", "subject": action.get("subject"), "body": action.get("body")}
    if kind in ("task", "task_due"):
        return {"kind": "task", "title": action.get("title"), "due_in_days": action.get("due_in_days", 1)}
    if kind == "note":
        return {"kind": "note", "body": action.get("body")}
    return None


def template_text(card: CardForWords) -> CardText:
    reason = reason_sentence(card.rule, card.facts)
    return CardText(reasoning=f"{card.title}. {reason} {ranking_sentence(card.ranking)}", source="template")


# --- the LLM -------------------------------------------------------------------------------------


class DraftEmail(BaseModel):
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=4000)


class CardDraft(BaseModel):
    reasoning: str = Field(min_length=1, max_length=1500, description="2-4 sentences: why this action, now")
    talking_points: list[str] = Field(default_factory=list, max_length=5, description="Points to raise, one line each")
    draft_email: DraftEmail | None = Field(default=None, description="Only for email-like actions")
    cited_facts: list[str] = Field(default_factory=list, description="The names of the facts the reasoning uses")


EXPLAIN = PromptTemplate(
    name="recommendations.explain",
    version="1",
    system=(
        "You help a salesperson act on a CRM recommendation. Rules over the CRM produced it from "
        "the facts given; you only put them into words and suggest what to say. Use only the facts "
        "and the context. Never invent numbers, dates, names, prices or events. List in "
        "'cited_facts' the names of the facts your reasoning uses. Write a draft email only when "
        "asked for one; otherwise give 2-4 talking points."
    ),
    user=(
        "Recommendation ($type): $title\nExplain in 2-4 sentences why it matters now. $ask\n"
        f"{FACTS_BEGIN}\n$facts\n{FACTS_END}\n{CONTEXT_BEGIN}\n$context\n{CONTEXT_END}"
    ),
    output=CardDraft,
)


def _canonical(number: float) -> str:
    return (f"{number:f}").rstrip("0").rstrip(".")


def numbers_in(text: str, *, with_rounding: bool = False) -> set[str]:
    found = set()
    for raw in _NUMBER.findall(text):
        value = float(raw.replace(",", "."))
        found.add(_canonical(value))
        if with_rounding:
            found.add(_canonical(round(value)))
    return found


def problems_with(draft: CardDraft, card: CardForWords, given: str) -> list[str]:
    """What the draft says that the facts and context do not support."""
    problems = [f"cites an unknown fact: {name}" for name in draft.cited_facts if name not in card.facts]
    allowed = numbers_in(given, with_rounding=True) | {"100"}  # scores are said as N/100
    written = " ".join(
        [
            draft.reasoning,
            *draft.talking_points,
            *([draft.draft_email.subject, draft.draft_email.body] if draft.draft_email else []),
        ]
    )
    invented = numbers_in(written) - allowed
    if invented:
        problems.append(f"numbers not in the facts: {sorted(invented)}")
    if draft.draft_email is not None and card.type not in EMAIL_TYPES:
        problems.append("a draft email for an action that sends none")
    return problems


class LLMCardWriter:
    """A ``CardWriter`` backed by the LLM gateway; returns None rather than raising."""

    def __init__(self, gateway: LLMGateway, *, timeout_s: float = TIMEOUT_S) -> None:
        self.gateway = gateway
        self.timeout_s = timeout_s

    def write(self, card: CardForWords) -> CardText | None:
        facts = {k: v for k, v in card.facts.items() if k != "action"}
        facts_json = json.dumps(facts, ensure_ascii=False, default=str)
        ask = "Write a draft email to the contact." if card.type in EMAIL_TYPES else "Give talking points."
        messages = EXPLAIN.render(type=card.type, title=card.title, ask=ask, facts=facts_json, context=card.context)
        try:
            result = self.gateway.sync.chat_structured(
                messages, CardDraft, timeout_s=self.timeout_s, max_tokens=700, operation=EXPLAIN.id
            )
        except Exception as error:  # unreachable, breaker open, invalid output: the template answers
            logger.info("LLM card text unavailable: %s", error)
            return None
        draft = result.value
        problems = problems_with(draft, card, " ".join([facts_json, card.title, card.context]))
        if problems:
            logger.warning("LLM card text rejected (%s): %s", EXPLAIN.id, "; ".join(problems))
            return None
        return CardText(
            reasoning=draft.reasoning.strip(),
            talking_points=[p.strip() for p in draft.talking_points][:5],
            draft_email=draft.draft_email.model_dump() if draft.draft_email else None,
            source="llm",
            cited_facts=list(draft.cited_facts),
        )


def write_card_text(card: CardForWords, writer: CardWriter | None) -> tuple[CardText, bool]:
    """The writer's words when it gives them, else the template's; the flag says "degraded"."""
    if writer is not None:
        try:
            written = writer.write(card)
        except Exception as error:  # a writer failing must never cost the caller the card
            logger.warning("card writer failed; using the template: %s", error)
            written = None
        if written is not None:
            return written, False
    return template_text(card), True
