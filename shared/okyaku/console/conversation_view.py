"""Conversation insights as the record page's timeline shows them: pure functions from the
conversation service's answer (``ActivityAnalysisOut``) and the activity's text to what the
template prints — the summary and sentiment, the extracted items with their owner and due date,
and the text cut into segments so that every item's quote is a ``<mark>`` the item links to.

The analysis comes from the language model, or, while it has none, the rules floor (dates,
commitments, competitor names, amounts found deterministically), said to be the rules'."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from okyaku.conversation.responses import ActivityAnalysisOut, TextAnalysisOut
from okyaku.conversation.schema import ConversationAnalysis, RulesFindings


@dataclass(frozen=True)
class Item:
    text: str
    meta: str  # owner, due date, resolved, ... ("" when none)
    quote: str
    start: int | None
    end: int | None


@dataclass(frozen=True)
class Section:
    title: str
    items: list[Item]


@dataclass(frozen=True)
class Segment:
    """A piece of the activity's text; ``anchor`` set: a quoted span (``<mark id=anchor>``)."""

    text: str
    anchor: str | None = None
    label: str = ""


@dataclass
class LinkedItem:
    text: str
    meta: str
    quote: str
    anchor: str | None  # the mark holding its quote; None when the quote's span is unknown


@dataclass
class InsightView:
    activity_id: uuid.UUID | None  # None: a draft (nothing stored)
    status: str  # analysed | waiting_for_llm | not_analysed | no_text
    message: str | None
    degraded: bool
    source: str  # "llm" (the model's analysis) or "rules" (the floor)
    summary: str | None = None
    sentiment_label: str | None = None
    sentiment_score: float | None = None
    sentiment_quotes: list[str] = field(default_factory=list)
    model: str | None = None
    version: int | None = None
    analysed_at: Any = None
    waiting_since: Any = None
    waiting_attempts: int = 0
    waiting_reason: str = ""
    sections: list[tuple[str, list[LinkedItem]]] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    proposals: list[Any] = field(default_factory=list)
    dropped: int = 0

    @property
    def item_count(self) -> int:
        return sum(len(items) for _, items in self.sections)

    @property
    def counts(self) -> str:
        """ "2 action items, 1 competitor" for the disclosure's label."""
        parts = [f"{len(items)} {_noun(title, len(items))}" for title, items in self.sections if items]
        return ", ".join(parts) if parts else "nothing extracted"


SINGULAR = {
    "Action items": "action item",
    "Objections": "objection",
    "Competitors": "competitor",
    "Risks": "risk",
    "Key points": "key point",
    "Dates": "date",
    "Amounts": "amount",
    "Pricing": "pricing",
}


def _noun(title: str, count: int) -> str:
    return SINGULAR.get(title, title.lower()) if count == 1 else title.lower()


def _owner(owner: str, name: str | None) -> str:
    if owner == "named" and name:
        return name
    return {"us": "us", "them": "the customer", "named": name or "someone named"}.get(owner, owner)


def llm_sections(analysis: ConversationAnalysis) -> list[Section]:
    def due(value: Any) -> str:
        return f"due {value.isoformat()}" if value else "no due date"

    return [
        Section(
            "Action items",
            [
                Item(
                    a.description,
                    f"owner: {_owner(a.owner, a.owner_name)} · {due(a.due_date)}",
                    a.quote,
                    a.start,
                    a.end,
                )
                for a in analysis.action_items
            ],
        ),
        Section(
            "Objections",
            [
                Item(
                    o.objection,
                    "resolved" if o.resolved else ("answered: " + o.response if o.response else "open"),
                    o.quote,
                    o.start,
                    o.end,
                )
                for o in analysis.objections
            ],
        ),
        Section(
            "Competitors",
            [Item(c.name, c.context or "", c.quote, c.start, c.end) for c in analysis.competitors],
        ),
        Section(
            "Pricing",
            [
                Item(
                    p.detail,
                    f"{p.amount:,.0f} {p.currency or ''}".strip() if p.amount is not None else "",
                    p.quote,
                    p.start,
                    p.end,
                )
                for p in analysis.pricing
            ],
        ),
        Section("Risks", [Item(r.risk, f"{r.severity} severity", r.quote, r.start, r.end) for r in analysis.risks]),
        Section("Key points", [Item(k.point, "", k.quote, k.start, k.end) for k in analysis.key_points]),
    ]


def rules_sections(rules: RulesFindings) -> list[Section]:
    return [
        Section(
            "Action items",
            [
                Item(
                    a.description,
                    f"owner: {_owner(a.owner, a.owner_name)} · "
                    + (f"due {a.due_date.isoformat()}" if a.due_date else "no due date"),
                    a.quote,
                    a.start,
                    a.end,
                )
                for a in rules.action_items
            ],
        ),
        Section("Competitors", [Item(c.name, "", c.quote, c.start, c.end) for c in rules.competitors]),
        Section(
            "Dates",
            [Item(d.expression, d.resolved_date.isoformat(), d.quote, d.start, d.end) for d in rules.dates],
        ),
        Section(
            "Amounts",
            [
                Item(m.expression, f"{m.amount:,.0f} {m.currency or ''}".strip(), m.quote, m.start, m.end)
                for m in rules.money
            ],
        ),
    ]


def highlight(
    text: str, spans: Iterable[tuple[int, int, str]], prefix: str
) -> tuple[list[Segment], dict[tuple[int, int], str]]:
    """Cut ``text`` at the quoted spans (start, end, label): the segments, and each span's anchor.
    Overlapping spans share the first one's mark (a mark inside a mark would nest links)."""
    ordered = sorted({(s, e, label) for s, e, label in spans if 0 <= s < e <= len(text)}, key=lambda x: (x[0], -x[1]))
    segments: list[Segment] = []
    anchors: dict[tuple[int, int], str] = {}
    position = 0
    last: tuple[int, int, str] | None = None  # the mark that is open at ``position``
    for start, end, label in ordered:
        if last is not None and start < last[1]:
            anchors.setdefault((start, end), anchors[(last[0], last[1])])
            continue
        if start > position:
            segments.append(Segment(text[position:start]))
        anchor = f"{prefix}-{len(anchors) + 1}"
        anchors[(start, end)] = anchor
        segments.append(Segment(text[start:end], anchor, label))
        position = end
        last = (start, end, label)
    if position < len(text):
        segments.append(Segment(text[position:]))
    return segments, anchors


def _linked(
    sections: Sequence[Section], text: str, prefix: str
) -> tuple[list[tuple[str, list[LinkedItem]]], list[Segment]]:
    spans = [(i.start, i.end, s.title) for s in sections for i in s.items if i.start is not None and i.end is not None]
    segments, anchors = highlight(text, spans, prefix)
    linked = [
        (
            s.title,
            [
                LinkedItem(
                    i.text,
                    i.meta,
                    i.quote,
                    anchors.get((i.start, i.end)) if i.start is not None and i.end is not None else None,
                )
                for i in s.items
            ],
        )
        for s in sections
        if s.items
    ]
    return linked, segments


def activity_text(subject: str | None, body: str | None) -> str:
    """What the conversation service analyses and quotes: the body, or the subject without one."""
    return body if body and body.strip() else (subject or "")


def insight_view(answer: ActivityAnalysisOut, text: str) -> InsightView:
    prefix = f"q-{answer.activity_id}"
    view = InsightView(
        activity_id=answer.activity_id,
        status=answer.status,
        message=answer.message,
        degraded=answer.degraded,
        source="llm" if answer.analysis is not None else "rules",
        proposals=list(answer.proposals),
    )
    if answer.waiting is not None:
        view.waiting_since = answer.waiting.since
        view.waiting_attempts = answer.waiting.attempts
        view.waiting_reason = answer.waiting.reason.replace("llm_", "").replace("_", " ")
    if answer.analysis is not None:
        analysis = answer.analysis.analysis
        view.summary = analysis.summary
        view.sentiment_label = analysis.sentiment.label
        view.sentiment_score = analysis.sentiment.score
        view.sentiment_quotes = list(analysis.sentiment.quotes)
        view.model = answer.analysis.model
        view.version = answer.analysis.analysis_version
        view.analysed_at = answer.analysis.created_at
        view.dropped = len(answer.analysis.dropped)
        view.sections, view.segments = _linked(llm_sections(analysis), text, prefix)
    else:
        view.sections, view.segments = _linked(rules_sections(answer.rules), text, prefix)
    return view


def draft_view(result: TextAnalysisOut, text: str) -> InsightView:
    """The analysis of a draft (the analyze-text route): the model's, or the rules floor's."""
    view = InsightView(
        activity_id=None,
        status=result.status,
        message=result.message,
        degraded=result.degraded,
        source="llm" if result.analysis is not None else "rules",
        model=result.model,
    )
    if result.analysis is not None:
        view.summary = result.analysis.summary
        view.sentiment_label = result.analysis.sentiment.label
        view.sentiment_score = result.analysis.sentiment.score
        view.sections, view.segments = _linked(llm_sections(result.analysis), text, "draft")
    else:
        view.sections, view.segments = _linked(rules_sections(result.rules), text, "draft")
    return view
