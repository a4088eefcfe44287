"""Finding a quote in a text, tolerant only of what copying text changes.

A model copying a span may collapse whitespace and line breaks, straighten curly quotes, turn
dashes and ellipses into their ASCII forms, change letter case, or wrap the span in quotation
marks or end it with a full stop. Those are normalised away on both sides; anything else (a word
changed, added, dropped, reordered, or "..." standing for omitted words) is not found, so the item
it supports is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

_CHARACTER_FOLDS = {
    "\u2018": "'",
    "\u2019": "'",
    "\u201a": "'",
    "\u201b": "'",
    "\u2032": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u201e": '"',
    "\u2033": '"',
    "\u2010": "-",
    "\u2011": "-",
    "\u2012": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u2015": "-",
    "\u2212": "-",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
}
_TRIM = " \t\r\n\"'`.,;:!?()[]{}<>*_-"
MIN_QUOTE_CHARS = 3


@dataclass(frozen=True)
class NormalisedText:
    """``text`` normalised, with the original offset of every normalised character."""

    text: str
    offsets: tuple[int, ...]  # offsets[i] = position in the original of text[i]
    original_length: int


def normalise(original: str) -> NormalisedText:
    """Case-folded, whitespace runs collapsed to one space, quotes/dashes/ellipses in ASCII."""
    out: list[str] = []
    offsets: list[int] = []
    pending_space_at: int | None = None
    for index, char in enumerate(original):
        char = _CHARACTER_FOLDS.get(char, char)
        if char.isspace():
            if out and pending_space_at is None:
                pending_space_at = index
            continue
        if pending_space_at is not None:
            out.append(" ")
            offsets.append(pending_space_at)
            pending_space_at = None
        pieces = "..." if char == "…" else char.casefold()
        for piece in pieces:
            out.append(piece)
            offsets.append(index)
    return NormalisedText("".join(out), tuple(offsets), len(original))


def _trimmed(quote: str) -> str:
    return normalise(quote).text.strip(_TRIM)


@dataclass(frozen=True)
class Span:
    start: int
    end: int

    def of(self, text: str) -> str:
        return text[self.start : self.end]


class QuoteFinder:
    """Locates quotes in one text (normalised once)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._normalised = normalise(text)

    def find(self, quote: str, *, after: int = 0) -> Span | None:
        """The span of ``text`` that ``quote`` was copied from (the first at or after ``after``),
        or ``None`` when it is not a span of the text."""
        needle = _trimmed(quote)
        if len(needle) < MIN_QUOTE_CHARS:
            return None
        haystack = self._normalised
        start_from = 0
        if after:
            start_from = next((i for i, offset in enumerate(haystack.offsets) if offset >= after), len(haystack.text))
        position = haystack.text.find(needle, start_from)
        if position < 0 and start_from:
            position = haystack.text.find(needle)
        if position < 0:
            return None
        last = position + len(needle) - 1
        start = haystack.offsets[position]
        end = haystack.offsets[last] + 1
        # An ellipsis folded to "..." maps three characters to one: end after the original character.
        return Span(start, end)

    def contains(self, quote: str) -> bool:
        return self.find(quote) is not None


def is_span_of(quote: str, text: str) -> bool:
    return QuoteFinder(text).contains(quote)
