"""Keep only what the text supports: every item's quote must be a span of the text.

The kept item's ``quote`` becomes the exact span of the original text (not the model's copy) and
``start``/``end`` say where it is; an item whose quote is not found is dropped and reported.
"""

from __future__ import annotations

from typing import Any

from okyaku.conversation.quotes import QuoteFinder
from okyaku.conversation.schema import ITEM_LISTS, ConversationAnalysis, DroppedItem, Quoted


def _located(item: Quoted, finder: QuoteFinder, offset: int) -> Quoted | None:
    span = finder.find(item.quote, after=offset)
    if span is None:
        return None
    return item.model_copy(update={"quote": span.of(finder.text), "start": span.start, "end": span.end})


def verify_quotes(
    analysis: ConversationAnalysis, finder: QuoteFinder, *, offset: int = 0
) -> tuple[ConversationAnalysis, list[DroppedItem]]:
    """``analysis`` with unsupported items removed; ``offset`` is where the analysed chunk starts
    in the whole text (a quote is looked for from there first, then anywhere)."""
    dropped: list[DroppedItem] = []
    updates: dict[str, Any] = {}
    for name in ITEM_LISTS:
        kept = []
        for item in getattr(analysis, name):
            located = _located(item, finder, offset)
            if located is None:
                dropped.append(DroppedItem(category=name, quote=item.quote[:300], reason="quote not in the text"))
            else:
                kept.append(located)
        updates[name] = kept
    deal_updates: dict[str, Any] = {}
    for field in ("stage", "close_date", "amount"):
        signal = getattr(analysis.deal, field)
        if signal is None:
            continue
        located = _located(signal, finder, offset)
        if located is None:
            dropped.append(
                DroppedItem(category=f"deal.{field}", quote=signal.quote[:300], reason="quote not in the text")
            )
        deal_updates[field] = located
    updates["deal"] = analysis.deal.model_copy(update=deal_updates)
    sentiment_quotes = []
    for quote in analysis.sentiment.quotes:
        span = finder.find(quote, after=offset)
        if span is None:
            dropped.append(DroppedItem(category="sentiment", quote=quote[:300], reason="quote not in the text"))
        else:
            sentiment_quotes.append(span.of(finder.text))
    updates["sentiment"] = analysis.sentiment.model_copy(update={"quotes": sentiment_quotes})
    return analysis.model_copy(update=updates), dropped
