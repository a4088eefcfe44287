"""The rules floor: what can be found in a text without the LLM, deterministically, each item quoted.

- commitments and next steps: sentences where someone says they will do something ("I'll send the
  proposal by Friday", "let's meet next Tuesday", "Dana will loop in legal", "please send the
  W-9"), bullets under a "Next steps" / "Action items" heading, and imperative notes to self
  ("Send revised quote Thursday"); the owner follows who speaks (see ``Perspective``) and the due
  date is the first date expression of the sentence, resolved against the activity's date;
- explicit dates (``okyaku.conversation.dates``);
- competitors: names (and aliases) from the organization's list, as whole words, any case;
- money amounts with a currency sign or code ($45k, USD 30,000, 12.5k EUR, 1.2 million dollars).

It does not understand negation beyond "won't/will not/can't", hypotheticals, or who "I" is in a
transcript without speaker labels; it never invents a quote (every quote is a span of the text).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from okyaku.conversation.dates import find_dates
from okyaku.conversation.schema import (
    DateMention,
    MoneyMention,
    Owner,
    RulesActionItem,
    RulesCompetitor,
    RulesFindings,
)


@dataclass(frozen=True)
class Perspective:
    """Who "I"/"we" are in the text: the seller (notes, calls, meetings, outbound email) or the
    customer (inbound email). In a transcript, a speaker labelled with one of ``our_labels`` (the
    organization's name, "us", "rep"...) is our side, one labelled "customer"/"client"/"prospect"
    theirs, any other named speaker is that person."""

    first_person_is_us: bool = True
    our_labels: frozenset[str] = frozenset()

    @classmethod
    def for_activity(
        cls, activity_type: str | None, direction: str | None, organization_name: str | None = None
    ) -> Perspective:
        labels = frozenset({organization_name.casefold()}) if organization_name else frozenset()
        return cls(first_person_is_us=not (activity_type == "email" and direction == "inbound"), our_labels=labels)

    def side_of(self, speaker: str | None, speaker_org: str | None) -> Owner | None:
        """us/them for a labelled speaker, None when the label names someone."""
        for label in (speaker_org, speaker):
            if label is None:
                continue
            folded = label.casefold()
            if folded in _OUR_SPEAKERS or folded in self.our_labels:
                return "us"
            if folded in _THEIR_SPEAKERS:
                return "them"
        return None


@dataclass(frozen=True)
class Competitor:
    name: str
    aliases: tuple[str, ...] = ()

    def patterns(self) -> list[str]:
        return [self.name, *self.aliases]


@dataclass(frozen=True)
class Sentence:
    start: int
    end: int
    text: str
    speaker: str | None = None
    speaker_org: str | None = None
    bullet_under_next_steps: bool = False


# --- sentences ------------------------------------------------------------------------------------

_SPEAKER = re.compile(r"^(?P<name>[A-Z][\w.'-]*(?: [A-Z][\w.'-]*){0,3})(?: \((?P<org>[^)]{1,60})\))?:\s+")
_BULLET = re.compile(r"^(?:[-*\u2022\u25aa>]+|\d{1,2}[.)]|\[ ?[xX ]?\])\s*")
_HEADING = re.compile(
    r"^\s*(?:#+\s*)?(?:next\s+steps?|action\s+items?|follow[- ]?ups?|to[- ]?dos?|todo|ais)\s*:?\s*$", re.IGNORECASE
)
_INLINE_HEADING = re.compile(
    r"^(?:next\s+steps?|action\s+items?|follow[- ]?ups?|to[- ]?dos?)\s*[:\-\u2013]\s*(?P<rest>\S.*)$", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")
_OUR_SPEAKERS = {"me", "i", "us", "we", "our side", "rep", "sales rep", "ae", "sdr", "seller", "vendor"}
_THEIR_SPEAKERS = {"customer", "client", "prospect", "buyer", "them", "they"}


def split_sentences(text: str) -> list[Sentence]:
    """Sentences with their offsets; a line's bullet marker and speaker label are not part of them.
    Lines under a "Next steps:" heading (until a blank line) are marked as next steps."""
    sentences: list[Sentence] = []
    under_heading = False
    position = 0
    for line in text.splitlines(keepends=True):
        line_start = position
        position += len(line)
        stripped = line.rstrip("\r\n")
        if not stripped.strip():
            under_heading = False
            continue
        if _HEADING.match(stripped):
            under_heading = True
            continue
        offset = len(stripped) - len(stripped.lstrip())
        body = stripped[offset:]
        inline = _INLINE_HEADING.match(body)
        next_step = under_heading
        if inline:
            offset += inline.start("rest")
            body = body[inline.start("rest") :]
            next_step = True
        bullet = _BULLET.match(body)
        if bullet and bullet.end() > 0:
            offset += bullet.end()
            body = body[bullet.end() :]
        speaker = speaker_org = None
        label = _SPEAKER.match(body)
        if label and not _looks_like_field(label.group("name")):
            speaker, speaker_org = label.group("name"), label.group("org")
            offset += label.end()
            body = body[label.end() :]
        piece_start = 0
        for boundary in [*(m.start() for m in _SENTENCE_END.finditer(body)), len(body)]:
            base = line_start + offset + piece_start
            sentences.extend(_pieces(body[piece_start:boundary], base, speaker, speaker_org, next_step))
            piece_start = boundary
    return sentences


def _pieces(piece: str, base: int, speaker: str | None, speaker_org: str | None, next_step: bool) -> list[Sentence]:
    """One sentence, or, after an inline "Action items:" lead, each of its ';'-separated steps."""
    inline = _INLINE_HEADING.match(piece.strip())
    if inline:
        lead = len(piece) - len(piece.lstrip())
        base += lead + inline.start("rest")
        piece, next_step = inline.group("rest"), True
    parts = re.split(r";\s+", piece) if next_step else [piece]
    out: list[Sentence] = []
    position = 0
    for part in parts:
        at = piece.index(part, position)
        position = at + len(part)
        lead = len(part) - len(part.lstrip())
        text = part.strip()
        if text:
            start = base + at + lead
            out.append(Sentence(start, start + len(text), text, speaker, speaker_org, next_step))
    return out


def _looks_like_field(name: str) -> bool:
    """ "Subject:", "Date:", "Re:" start header lines, not speech."""
    return name.lower() in {"subject", "date", "re", "fw", "fwd", "to", "from", "cc", "attendees", "notes", "note"}


# --- commitments ----------------------------------------------------------------------------------

_FIRST_PERSON = re.compile(
    r"\b(?:i(?:'ll| will| shall|'m going to| am going to| plan to| need to| have to| can get| promise to)"
    r"|we(?:'ll| will| shall|'re going to| are going to| plan to| need to| have to| can get| promise to)"
    r"|let me|i'd (?:be (?:glad|happy) to|like to)|i owe (?:you|them)|on me to)\b",
    re.IGNORECASE,
)
_SECOND_PERSON = re.compile(r"\byou(?:'ll| will| are going to|'re going to| promised to| agreed to)\b", re.IGNORECASE)
_LETS = re.compile(r"\blet(?:'s| us)\s+(?!see\b|know\b|hope\b|be\b|say\b)\w+", re.IGNORECASE)
_THIRD_PERSON = re.compile(
    r"\b(?P<who>they|she|he|(?-i:[A-Z][a-z]+(?: [A-Z][a-z]+)?))(?: \([^)]{1,40}\))?"
    r"(?:'ll| will| is going to| are going to| promised to| agreed to| committed to| plans? to| needs? to| owes us|"
    r" (?:is|are) (?:sending|preparing|scheduling|reviewing|drafting|setting up|booking|getting|sharing)|"
    r" (?=to (?:send|share|review|confirm|get|sign|loop|check|book|schedule|provide|introduce)\b)(?:to))\b",
    re.IGNORECASE,
)
_REQUEST = re.compile(
    r"\b(?:(?:can|could|would|will) you(?: please)?|please|pls|kindly)\s+(?:send|share|review|confirm|sign|"
    r"forward|provide|get|set up|schedule|book|loop|check|let|introduce|fill|return|approve|update|include|add|"
    r"call|email|send over)\b",
    re.IGNORECASE,
)
_IMPERATIVE = re.compile(
    r"^(?:send|follow up|follow-up|schedule|book|share|prepare|draft|review|call|email|set up|loop in|confirm|"
    r"get back|circle back|reach out|check in|update|create|put together|chase|ping|invite|will)\b"
    r"(?! with\b| from\b| notes?\b)",
    re.IGNORECASE,
)
# "Kickoff call scheduled for 2026-12-01", "Demo booked on Tuesday": a meeting set, ours to hold.
_SCHEDULED = re.compile(
    r"\b(?:call|meeting|demo|session|kickoff|kick-off|review|workshop|follow-up|check-in|sync)\b[^.;]{0,40}?"
    r"\b(?:scheduled|booked|set|confirmed|planned)\s+(?:for|on)\b",
    re.IGNORECASE,
)
_NEGATED = re.compile(r"\b(?:won't|will not|can't|cannot|shan't|never|not going to|don't|didn't)\b", re.IGNORECASE)
_NOT_A_COMMITMENT = re.compile(
    r"\b(?:we'll see|i'll be honest|i will say|i'll admit|we'll have to wait|would have)\b|^if\b", re.IGNORECASE
)
_PRONOUNS_THEM = {"they", "she", "he"}
# Capitalised words that start sentences but are no one's name.
_NOT_NAMES = {
    "I",
    "We",
    "You",
    "Our",
    "Your",
    "Their",
    "His",
    "Her",
    "Its",
    "It",
    "This",
    "That",
    "These",
    "Those",
    "There",
    "Here",
    "Which",
    "What",
    "Who",
    "Everyone",
    "Everything",
    "Nothing",
    "Someone",
    "Somebody",
    "The",
    "A",
    "An",
    "Both",
    "All",
    "Each",
    "Pricing",
    "Legal",
    "Finance",
    "Procurement",
    "Security",
}


def _owner_of(sentence: Sentence, perspective: Perspective) -> tuple[Owner, str | None] | None:
    text = sentence.text
    if _NEGATED.search(text) or _NOT_A_COMMITMENT.search(text):
        return None
    first = _FIRST_PERSON.search(text)
    lets = _LETS.search(text)
    third = _THIRD_PERSON.search(text)
    request = _REQUEST.search(text)
    second = _SECOND_PERSON.search(text)
    candidates = [m for m in (first, lets, second, request, third) if m is not None]
    imperative = _IMPERATIVE.match(text)
    if not candidates:
        if imperative or sentence.bullet_under_next_steps or _SCHEDULED.search(text):
            return _us_or_speaker(sentence, perspective)
        return None
    earliest = min(candidates, key=lambda m: m.start())
    if earliest is lets:
        return "us", None
    if earliest is first:
        return _us_or_speaker(sentence, perspective)
    if earliest is request or earliest is second:
        # The one asked is the other side of whoever speaks or writes.
        speaker_side = _speaker_side(sentence, perspective)
        if speaker_side is not None:
            return ("them" if speaker_side == "us" else "us"), None
        return ("them", None) if perspective.first_person_is_us else ("us", None)
    assert third is not None
    who = third.group("who")
    if who.lower() in _PRONOUNS_THEM:
        return "them", None  # a third person is rarely the writer's own side
    if who.split()[0] in _NOT_NAMES:
        return None
    return "named", who


def _speaker_side(sentence: Sentence, perspective: Perspective) -> Owner | None:
    """The side of a labelled speaker: us/them, "named" for a person, None without a label."""
    if sentence.speaker is None:
        return None
    return perspective.side_of(sentence.speaker, sentence.speaker_org) or "named"


def _us_or_speaker(sentence: Sentence, perspective: Perspective) -> tuple[Owner, str | None]:
    side = _speaker_side(sentence, perspective)
    if side == "named":
        return "named", sentence.speaker
    if side is not None:
        return side, None
    return ("us", None) if perspective.first_person_is_us else ("them", None)


# Words that make a sentence less than a promise: enough to keep it off the approval queue.
_HEDGED = re.compile(
    r"\b(?:maybe|perhaps|might|possibly|probably|hopefully|try to|trying to|if|unless|whether|ideally)\b",
    re.IGNORECASE,
)


def is_explicit_commitment(sentence: str) -> bool:
    """Whether a sentence says outright that someone will do something: a first-person promise,
    "let's", a named person's or the other side's "will", a request, or an imperative note to self —
    not hedged, negated or a bare question. Stricter than :func:`find_action_items` (which also
    takes a step under a "Next steps" heading or a meeting "scheduled for"): what the rules floor
    proposes as a task without anyone having read it must be unmistakable."""
    text = sentence.strip()
    if not text or _NEGATED.search(text) or _NOT_A_COMMITMENT.search(text) or _HEDGED.search(text):
        return False
    if text.endswith("?") and not _REQUEST.search(text):
        return False
    if any(p.search(text) for p in (_FIRST_PERSON, _LETS, _SECOND_PERSON, _REQUEST)) or _IMPERATIVE.match(text):
        return True
    third = _THIRD_PERSON.search(text)
    return third is not None and third.group("who").split()[0] not in _NOT_NAMES


def find_action_items(text: str, anchor: date, perspective: Perspective) -> list[RulesActionItem]:
    items: list[RulesActionItem] = []
    for sentence in split_sentences(text):
        if sentence.text.endswith("?") and not _REQUEST.search(sentence.text):
            continue
        owner = _owner_of(sentence, perspective)
        if owner is None:
            continue
        dates = find_dates(sentence.text, anchor)
        items.append(
            RulesActionItem(
                quote=sentence.text,
                start=sentence.start,
                end=sentence.end,
                description=sentence.text.rstrip(".!"),
                owner=owner[0],
                owner_name=owner[1],
                due_date=dates[0].value if dates else None,
            )
        )
    return items


# --- competitors ----------------------------------------------------------------------------------


def _sentence_around(sentences: Sequence[Sentence], text: str, start: int, end: int) -> tuple[int, int]:
    for sentence in sentences:
        if sentence.start <= start and end <= sentence.end:
            return sentence.start, sentence.end
    return start, end


def _name_pattern(name: str) -> str:
    """A single capitalised word (Close, Zoho) is also an ordinary word or a sentence's first word:
    it must keep its capital; other names (HubSpot, Close.com, Zoho CRM, sfdc) match in any case."""
    if re.fullmatch(r"[A-Z][a-z]+", name):
        return "(?-i:" + name[0] + ")(?i:" + re.escape(name[1:]) + ")"
    return "(?i:" + re.escape(name) + ")"


def find_competitors(text: str, competitors: Iterable[Competitor]) -> list[RulesCompetitor]:
    sentences = split_sentences(text)
    found: list[RulesCompetitor] = []
    for competitor in competitors:
        names = sorted({p.strip() for p in competitor.patterns() if p.strip()}, key=len, reverse=True)
        if not names:
            continue
        pattern = re.compile(r"(?<![\w.])(?:" + "|".join(_name_pattern(n) for n in names) + r")(?![\w])")
        for match in pattern.finditer(text):
            start, end = _sentence_around(sentences, text, match.start(), match.end())
            found.append(RulesCompetitor(quote=text[start:end], start=start, end=end, name=competitor.name))
    found.sort(key=lambda c: c.start or 0)
    return found


# --- money ----------------------------------------------------------------------------------------

_SIGNS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
_CODES = {
    code.lower(): code
    for code in [
        "USD",
        "EUR",
        "GBP",
        "CAD",
        "AUD",
        "NZD",
        "CHF",
        "JPY",
        "CNY",
        "HKD",
        "SGD",
        "INR",
        "NOK",
        "SEK",
        "DKK",
        "PLN",
        "CZK",
        "HUF",
        "MXN",
        "BRL",
        "ZAR",
        "AED",
        "SAR",
        "ILS",
        "KRW",
    ]
}
_WORDS = {"dollars": "USD", "dollar": "USD", "bucks": "USD", "euros": "EUR", "euro": "EUR", "pounds": "GBP"}
_SCALES = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mm": 1e6, "mil": 1e6, "million": 1e6, "bn": 1e9, "billion": 1e9}
_CODE = "|".join(_CODES)
_NUMBER = r"(?P<number>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<fraction>\d+))?"
_SCALE = r"(?:\s?(?P<scale>k|mm|m|mil|bn)\b|\s(?P<scale_word>thousand|million|billion)\b)?"
_MONEY_PATTERNS = [
    re.compile(r"(?P<sign>[$€£¥])\s?" + _NUMBER + _SCALE, re.IGNORECASE),
    re.compile(r"\b(?P<code>" + _CODE + r")\s?" + _NUMBER + _SCALE, re.IGNORECASE),
    re.compile(
        r"(?<![\w$€£.,])" + _NUMBER + _SCALE + r"\s?(?P<code>" + _CODE + r"|dollars?|bucks|euros?|pounds)\b",
        re.IGNORECASE,
    ),
]


def _amount(match: re.Match[str]) -> float:
    groups = match.groupdict()
    value = float(groups["number"].replace(",", "") + ("." + groups["fraction"] if groups.get("fraction") else ""))
    scale = (groups.get("scale") or groups.get("scale_word") or "").lower()
    return value * _SCALES.get(scale, 1.0)


def _currency(match: re.Match[str]) -> str | None:
    groups = match.groupdict()
    if groups.get("sign"):
        return _SIGNS[groups["sign"]]
    code = (groups.get("code") or "").lower()
    return _CODES.get(code) or _WORDS.get(code)


def find_money(text: str) -> list[MoneyMention]:
    sentences = split_sentences(text)
    spans: list[tuple[int, int, re.Match[str]]] = []
    for pattern in _MONEY_PATTERNS:
        for match in pattern.finditer(text):
            if any(s < match.end() and match.start() < e for s, e, _ in spans):
                continue
            spans.append((match.start(), match.end(), match))
    found: list[MoneyMention] = []
    for start, end, match in sorted(spans, key=lambda s: s[0]):
        quote_start, quote_end = _sentence_around(sentences, text, start, end)
        found.append(
            MoneyMention(
                quote=text[quote_start:quote_end],
                start=quote_start,
                end=quote_end,
                expression=match.group(0).strip(),
                amount=round(_amount(match), 2),
                currency=_currency(match),
            )
        )
    return found


# --- all of it ------------------------------------------------------------------------------------


def extract_rules(
    text: str,
    *,
    anchor: date,
    perspective: Perspective | None = None,
    competitors: Iterable[Competitor] = (),
) -> RulesFindings:
    """The rules floor for one text; ``anchor`` is the activity's date (relative dates resolve to it)."""
    perspective = perspective or Perspective()
    dates = [
        DateMention(quote=d.expression, start=d.start, end=d.end, expression=d.expression, resolved_date=d.value)
        for d in find_dates(text, anchor)
    ]
    return RulesFindings(
        action_items=find_action_items(text, anchor, perspective),
        dates=dates,
        competitors=find_competitors(text, competitors),
        money=find_money(text),
    )
