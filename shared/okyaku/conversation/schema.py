"""The conversation analysis: what the LLM must return for one activity text, and what is stored.

Versioned: ``ANALYSIS_SCHEMA_VERSION`` changes whenever a field changes meaning or shape; stored
analyses keep the version they were made with. Every extracted item carries ``quote``, which must be
a span of the activity's text: the service finds it there (``start``/``end`` are the span it found)
and drops the item when it is not there, so nothing in an analysis is invented.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ANALYSIS_SCHEMA_VERSION = "1"

Owner = Literal["us", "them", "named"]
SentimentLabel = Literal["negative", "neutral", "positive", "mixed"]
Method = Literal["llm", "rules"]

_QUOTE = Field(
    min_length=1,
    max_length=1000,
    description="The exact words of the text this item comes from, copied verbatim (a span of the text)",
)


class Quoted(BaseModel):
    model_config = ConfigDict(extra="ignore")

    quote: str = _QUOTE
    # Set by the service from where the quote was found in the text; any value the model sends is replaced.
    start: int | None = Field(default=None, description="Leave empty")
    end: int | None = Field(default=None, description="Leave empty")


class KeyPoint(Quoted):
    point: str = Field(min_length=1, max_length=500)


class ActionItem(Quoted):
    description: str = Field(min_length=1, max_length=500, description="What is to be done, as an imperative")
    owner: Owner = Field(description="us = the seller's side, them = the customer's side, named = a named person")
    owner_name: str | None = Field(default=None, max_length=200, description="The person's name when stated")
    due_date: date | None = Field(default=None, description="ISO date, only when the text states or implies one")


class Objection(Quoted):
    objection: str = Field(min_length=1, max_length=500)
    response: str | None = Field(default=None, max_length=1000, description="How it was answered, if it was")
    resolved: bool | None = None


class CompetitorMention(Quoted):
    name: str = Field(min_length=1, max_length=200)
    context: str | None = Field(default=None, max_length=500)


class PricingMention(Quoted):
    detail: str = Field(min_length=1, max_length=500)
    amount: float | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, max_length=3, description="ISO 4217 code, e.g. USD")


class TimelineMention(Quoted):
    detail: str = Field(min_length=1, max_length=500)
    target_date: date | None = Field(default=None, description="ISO date, when one is stated")


class DecisionProcessMention(Quoted):
    detail: str = Field(min_length=1, max_length=500, description="Who decides, approvals, procurement steps")


class CustomerQuestion(Quoted):
    question: str = Field(min_length=1, max_length=500)
    answered: bool | None = None


class Risk(Quoted):
    risk: str = Field(min_length=1, max_length=500)
    severity: Literal["low", "medium", "high"] = "medium"


class Sentiment(BaseModel):
    model_config = ConfigDict(extra="ignore")

    score: float = Field(ge=-1, le=1, description="The customer side's sentiment, -1 (hostile) .. 1 (enthusiastic)")
    label: SentimentLabel
    quotes: list[str] = Field(default_factory=list, max_length=5, description="Exact words that show it")


class StageSignal(Quoted):
    stage: str = Field(min_length=1, max_length=100, description="The pipeline stage the deal is now in, by name")


class CloseDateSignal(Quoted):
    close_date: date


class AmountSignal(Quoted):
    amount: float = Field(ge=0)
    currency: str | None = Field(default=None, max_length=3)


class DealSignals(BaseModel):
    """What the text states about the deal itself; empty unless stated."""

    model_config = ConfigDict(extra="ignore")

    stage: StageSignal | None = None
    close_date: CloseDateSignal | None = None
    amount: AmountSignal | None = None


class ContactFact(Quoted):
    field: Literal["job_title", "phone"]
    value: str = Field(min_length=1, max_length=200)
    person_name: str | None = Field(default=None, max_length=200, description="Whose title or phone it is")


class ConversationAnalysis(BaseModel):
    """The LLM's answer for one text (or one chunk of it), and after merging, for the whole text."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1, max_length=3000, description="Three sentences at most")
    key_points: list[KeyPoint] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)
    objections: list[Objection] = Field(default_factory=list)
    competitors: list[CompetitorMention] = Field(default_factory=list)
    pricing: list[PricingMention] = Field(default_factory=list, description="Prices, discounts, budget")
    timeline: list[TimelineMention] = Field(default_factory=list)
    decision_process: list[DecisionProcessMention] = Field(default_factory=list)
    customer_questions: list[CustomerQuestion] = Field(default_factory=list)
    risks: list[Risk] = Field(default_factory=list)
    sentiment: Sentiment
    deal: DealSignals = Field(default_factory=DealSignals)
    contact_facts: list[ContactFact] = Field(default_factory=list)


# The lists of quoted items, in the order they are checked and merged.
ITEM_LISTS: tuple[str, ...] = (
    "key_points",
    "action_items",
    "objections",
    "competitors",
    "pricing",
    "timeline",
    "decision_process",
    "customer_questions",
    "risks",
    "contact_facts",
)


# --- the rules floor --------------------------------------------------------------------------


class DateMention(Quoted):
    expression: str
    resolved_date: date


class MoneyMention(Quoted):
    expression: str
    amount: float
    currency: str | None = None


class RulesCompetitor(Quoted):
    name: str


class RulesActionItem(Quoted):
    description: str
    owner: Owner
    owner_name: str | None = None
    due_date: date | None = None


class RulesFindings(BaseModel):
    """What the deterministic extractor finds without the LLM: explicit dates, commitments, competitor
    names from the organization's list, money amounts. Each quoted; ``method`` is always "rules"."""

    method: Literal["rules"] = "rules"
    action_items: list[RulesActionItem] = Field(default_factory=list)
    dates: list[DateMention] = Field(default_factory=list)
    competitors: list[RulesCompetitor] = Field(default_factory=list)
    money: list[MoneyMention] = Field(default_factory=list)


class DroppedItem(BaseModel):
    """An item the LLM returned whose quote is not in the text: kept out of the analysis, counted."""

    category: str
    quote: str
    reason: str
