"""Long texts are analysed in chunks and the chunks' analyses merged into one.

Chunks end at paragraph, then line, then sentence boundaries (never inside a word when it can be
helped) and each knows its offset in the whole text, so quotes are checked against the whole text.
Merging is deterministic: lists are concatenated in text order with duplicates (the same quote, or
the same competitor name) removed; summaries are joined in order; the sentiment is the mean of the
chunks' scores weighted by chunk length, its label "mixed" when chunks disagree in sign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from okyaku.conversation.quotes import normalise
from okyaku.conversation.schema import (
    ITEM_LISTS,
    ConversationAnalysis,
    DealSignals,
    Sentiment,
    SentimentLabel,
)

_BOUNDARIES = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?])\s+"), re.compile(r"\s+"))


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    text: str


def chunk_text(text: str, max_chars: int) -> list[Chunk]:
    if len(text) <= max_chars:
        return [Chunk(0, 0, text)]
    chunks: list[Chunk] = []
    position = 0
    while position < len(text):
        end = min(position + max_chars, len(text))
        if end < len(text):
            end = _cut(text, position, end, max_chars)
        piece = text[position:end]
        if piece.strip():
            chunks.append(Chunk(len(chunks), position, piece))
        position = end
    return chunks


def _cut(text: str, start: int, limit: int, max_chars: int) -> int:
    """The last boundary before ``limit`` that keeps the chunk at least half full."""
    window = text[start:limit]
    for boundary in _BOUNDARIES:
        cuts = [m.end() for m in boundary.finditer(window) if m.end() >= max_chars // 2]
        if cuts:
            return start + cuts[-1]
    return limit


def label_for(score: float) -> SentimentLabel:
    if score >= 0.2:
        return "positive"
    if score <= -0.2:
        return "negative"
    return "neutral"


def merge_analyses(parts: list[tuple[Chunk, ConversationAnalysis]]) -> ConversationAnalysis:
    if len(parts) == 1:
        return parts[0][1]
    merged: dict[str, list[object]] = {name: [] for name in ITEM_LISTS}
    seen: dict[str, set[str]] = {name: set() for name in ITEM_LISTS}
    for _, analysis in parts:
        for name in ITEM_LISTS:
            for item in getattr(analysis, name):
                key = item.name.casefold() if name == "competitors" else normalise(item.quote).text
                if key in seen[name]:
                    continue
                seen[name].add(key)
                merged[name].append(item)
    weights = [max(len(chunk.text), 1) for chunk, _ in parts]
    scores = [analysis.sentiment.score for _, analysis in parts]
    score = sum(w * s for w, s in zip(weights, scores, strict=True)) / sum(weights)
    signs = {(s > 0.2) - (s < -0.2) for s in scores}
    label: SentimentLabel = "mixed" if {1, -1} <= signs else label_for(score)
    quotes = [q for _, analysis in parts for q in analysis.sentiment.quotes][:5]
    deal = DealSignals()
    for _, analysis in parts:  # the latest statement about the deal wins
        deal = DealSignals(
            stage=analysis.deal.stage or deal.stage,
            close_date=analysis.deal.close_date or deal.close_date,
            amount=analysis.deal.amount or deal.amount,
        )
    summary = " ".join(analysis.summary.strip() for _, analysis in parts)
    return ConversationAnalysis.model_validate(
        {
            **{name: [item.model_dump() for item in merged[name]] for name in ITEM_LISTS},  # type: ignore[attr-defined]
            "summary": summary[:3000],
            "sentiment": Sentiment(score=round(score, 3), label=label, quotes=quotes).model_dump(),
            "deal": deal.model_dump(),
        }
    )
