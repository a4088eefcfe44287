"""Is an agent's final answer grounded in what its tools returned?

A weak model answers fluently from nothing, so a run is ``completed`` only when its answer passes
this check, and ``inconclusive`` (answer kept, marked unverified) otherwise:

- the model made at least one successful tool call of its own (a runner's preload does not count);
- every number in the answer is in the tool results, the task or its context (formatting variants
  12,000 / 12000 / 12k / 1.2M, rounding to the precision written, a percentage of a stated
  fraction, counts of returned lists);
- every name it mentions is one the tools returned: capitalised phrases made of words that are not
  ordinary vocabulary, and any of the organization's record names found in the answer by the caller;
- it cites at least one fact of the results, unless it only reports proposals made in the run or
  the results held nothing to cite.

Pure: no database, no model. The caller gathers the :class:`Evidence` and the record names.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from importlib.resources import files
from typing import Any, Literal

GroundingReason = Literal[
    "empty_answer", "no_tool_calls", "ungrounded_numbers", "ungrounded_names", "unsupported_answer"
]

REASON_MESSAGES: dict[str, str] = {
    "empty_answer": "the model gave no answer",
    "no_tool_calls": "the model answered without a successful tool call, so its answer rests on no data",
    "ungrounded_numbers": "the answer states numbers that are not in the tool results",
    "ungrounded_names": "the answer names records or people that the tools did not return",
    "unsupported_answer": "the answer cites nothing that the tools returned",
}

_MULTIPLIERS = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mn": 1e6,
    "million": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
}
# A number as people write it: 12000, 12,000, -3.5, 12k, 1.2M, 45%, 3 million. Digits glued to
# letters (Q3, v2, a uuid) are not numbers; the lookahead keeps "12 months" from being 12 million.
_NUMBER = re.compile(
    r"(?<![\w.])(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?P<dec>\.\d+)?"
    r"(?:(?P<pct>\s?%)|(?P<short>k|K|M|mn|bn|B)(?![\w])|\s(?P<word>thousand|million|billion)\b)?(?![\w])"
)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d\d)-(\d\d)(?:[T ][\d:.]+(?:Z|[+-]\d\d:?\d\d)?)?\b")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_LIST_MARKER = re.compile(r"(?m)^[ \t>*#-]*\d{1,2}[.)](?=\s)")
_APOSTROPHE = "\u2019"  # the typographic one models write in "Acme\u2019s"
_WORD = re.compile(rf"(?<!\w)[^\W\d_](?:[\w'{_APOSTROPHE}]*[^\W_])?")
_NAME_CONNECTORS = frozenset({"of", "&", "de", "del", "der", "van", "von", "la", "le", "du", "da", "y"})
_MAX_RELATIVE_ROUNDING = 0.05  # "50,000" may round 48,700, not 30,000


@dataclass(frozen=True)
class Evidence:
    """What the answer may rest on."""

    results: tuple[Any, ...]  # the JSON the tools returned (successful calls, preloads included)
    tool_calls: int  # successful tool calls the model made itself
    user_text: str = ""  # the task and its context: what the person said may be repeated
    proposals: int = 0  # changes proposed in the run (the answer may report them)
    today: date | None = None
    vocabulary: frozenset[str] = frozenset()  # lowercase words of the prompt and tools: not names


@dataclass(frozen=True)
class Verdict:
    grounded: bool
    reason: GroundingReason | None = None
    numbers: tuple[str, ...] = ()  # the answer's numbers not found in the evidence
    names: tuple[str, ...] = ()  # the answer's names not found in the evidence
    cited: tuple[str, ...] = field(default=())  # facts of the evidence the answer repeats (a sample)

    @property
    def message(self) -> str:
        if self.reason is None:
            return "every number and name in the answer was found in the tool results"
        text = REASON_MESSAGES[self.reason]
        if self.reason == "ungrounded_numbers":
            text += ": " + ", ".join(self.numbers)
        elif self.reason == "ungrounded_names":
            text += ": " + ", ".join(self.names)
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "verified": self.grounded,
            "reason": self.reason,
            "message": self.message,
            "ungrounded_numbers": list(self.numbers),
            "ungrounded_names": list(self.names),
            "cited": list(self.cited),
        }


def check_answer(answer: str, evidence: Evidence, *, record_names: Collection[str] = ()) -> Verdict:
    """``record_names``: the organization's record names that occur in ``answer`` (the caller looks
    them up); each must also be in the evidence."""
    text = answer.strip()
    if not text:
        return Verdict(False, "empty_answer")
    if evidence.tool_calls <= 0:
        return Verdict(False, "no_tool_calls")
    facts = _Facts.of(evidence)
    numbers_missing, numbers_cited = _check_numbers(text, facts)
    names_missing, names_cited = _check_names(text, facts, evidence.vocabulary | facts.keys, record_names)
    cited = tuple(dict.fromkeys([*numbers_cited, *names_cited]))[:10]
    if numbers_missing:
        return Verdict(False, "ungrounded_numbers", numbers=numbers_missing, names=names_missing)
    if names_missing:
        return Verdict(False, "ungrounded_names", names=names_missing)
    if not cited and not evidence.proposals and facts.citable:
        return Verdict(False, "unsupported_answer")
    return Verdict(True, cited=cited)


# --- the evidence, flattened ---------------------------------------------------------------------


@dataclass
class _Facts:
    numbers: set[float]
    dates: set[str]
    words: set[str]  # lowercase words of every string (names, values), for name matching
    keys: frozenset[str]  # words of the field names ("lifecycle_stage"): labels, not names
    citable: bool  # the results hold a number or a name the answer could have cited

    @classmethod
    def of(cls, evidence: Evidence) -> _Facts:
        facts = cls(numbers={0.0, 1.0}, dates=set(), words=set(), keys=frozenset(), citable=False)
        keys: set[str] = set()
        for result in evidence.results:
            facts._walk(result, keys)
        facts.keys = vocabulary_of(*keys)
        ordinary = common_words() | evidence.vocabulary | facts.keys
        facts.citable = bool(facts.numbers - {0.0, 1.0}) or bool(facts.words - ordinary)
        facts._add_text(evidence.user_text)
        if evidence.today is not None:
            facts._add_text(evidence.today.isoformat())
        facts.numbers.update(float(n) for n in (evidence.tool_calls, evidence.proposals))
        return facts

    def _walk(self, value: Any, keys: set[str]) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, int | float):
            self.numbers.add(float(value))
        elif isinstance(value, str):
            self._add_text(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                keys.add(str(key))
                self._walk(item, keys)
        elif isinstance(value, list | tuple):
            self.numbers.add(float(len(value)))  # "3 open deals" counts a returned list
            for item in value:
                self._walk(item, keys)

    def _add_text(self, value: str) -> None:
        value = _UUID.sub(" ", value)
        for match in _ISO_DATE.finditer(value):
            self.dates.add(match.group()[:10])
            self.numbers.update(float(part) for part in match.groups())
        for number in _parse_numbers(_ISO_DATE.sub(" ", value)):
            self.numbers.add(number.value)
        self.words.update(_normal_word(w) for w in _WORD.findall(value))


@dataclass(frozen=True)
class _Number:
    text: str
    value: float
    tolerance: float  # half the unit of the last digit written (12k: 500)
    percent: bool


def _parse_numbers(text: str) -> Iterator[_Number]:
    for match in _NUMBER.finditer(text):
        digits = match.group("int").replace(",", "")
        decimals = match.group("dec") or ""
        suffix = (match.group("short") or match.group("word") or "").lower()
        multiplier = _MULTIPLIERS.get(suffix, 1.0)
        value = float(digits + decimals) * multiplier
        if decimals:
            unit = multiplier * 10.0 ** -(len(decimals) - 1)
        else:
            trailing_zeros = len(digits) - len(digits.rstrip("0")) if digits.strip("0") else 0
            unit = multiplier * 10.0**trailing_zeros
        tolerance = min(unit / 2, abs(value) * _MAX_RELATIVE_ROUNDING) if unit > 1 else unit / 2
        yield _Number(match.group().strip(), value, tolerance, bool(match.group("pct")))


def _number_known(number: _Number, known: Iterable[float]) -> bool:
    targets = [(number.value, number.tolerance)]
    if number.percent:
        targets.append((number.value / 100, number.tolerance / 100))  # 45% of a 0.45 rate
    return any(
        abs(abs(k) - target) <= tolerance + 1e-9 * max(1.0, target) for target, tolerance in targets for k in known
    )


def _check_numbers(answer: str, facts: _Facts) -> tuple[tuple[str, ...], list[str]]:
    missing: list[str] = []
    cited: list[str] = []
    for match in _ISO_DATE.finditer(answer):
        day = match.group()[:10]
        (cited if day in facts.dates else missing).append(day)
    rest = _LIST_MARKER.sub(" ", _ISO_DATE.sub(" ", _UUID.sub(" ", answer)))
    for number in _parse_numbers(rest):
        if _number_known(number, facts.numbers):
            if number.value not in (0.0, 1.0):
                cited.append(number.text)
        else:
            missing.append(number.text)
    return tuple(dict.fromkeys(missing)), cited


# --- names ---------------------------------------------------------------------------------------


@cache
def common_words() -> frozenset[str]:
    """Ordinary English and CRM words, which start sentences without being names."""
    raw = files(__package__).joinpath("common_words.txt").read_text(encoding="utf-8")
    return frozenset(w for line in raw.splitlines() if not line.startswith("#") for w in line.lower().split())


def vocabulary_of(*texts: str) -> frozenset[str]:
    """The lowercase words of ``texts`` (the prompt, the tools' descriptions and schemas), with
    identifiers split too ("lead_status": "lead", "status")."""
    words = {_normal_word(w) for text in texts for w in _WORD.findall(text)}
    return frozenset(words | {part for w in words if "_" in w for part in w.split("_") if part})


def _normal_word(word: str) -> str:
    word = word.lower().replace(_APOSTROPHE, "'")
    return word[:-2] if word.endswith("'s") else word


def name_candidates(answer: str, vocabulary: Collection[str] = frozenset()) -> list[str]:
    """Capitalised phrases of ``answer`` that look like names: runs of capitalised words (with
    "of", "&", "van" inside), less the ordinary words they start with; a phrase left with only
    ordinary or known words ("Closed Won", "Next Steps") is not a name."""
    ordinary = common_words() | frozenset(vocabulary)
    candidates: list[str] = []
    run: list[str] = []

    def flush() -> None:
        while run and run[-1].lower() in _NAME_CONNECTORS:
            run.pop()
        while run and _normal_word(run[0]) in ordinary:
            run.pop(0)  # "Based", "The", "Call" before the name
        if any(_normal_word(w) not in ordinary and w.lower() not in _NAME_CONNECTORS for w in run):
            candidates.append(" ".join(run))
        run.clear()

    previous_end = 0
    for match in _WORD.finditer(answer):
        word = match.group()
        adjacent = answer[previous_end : match.start()].strip() in ("", "&", "-")
        previous_end = match.end()
        if run and not adjacent:
            flush()
        if word[0].isupper() or (run and word.lower() in _NAME_CONNECTORS):
            run.append(word)
        else:
            flush()
    flush()
    return list(dict.fromkeys(candidates))


def _check_names(
    answer: str, facts: _Facts, vocabulary: Collection[str], record_names: Collection[str]
) -> tuple[tuple[str, ...], list[str]]:
    missing: list[str] = []
    cited: list[str] = []
    ordinary = common_words() | frozenset(vocabulary)
    for name in name_candidates(answer, vocabulary):
        words = [_normal_word(w) for w in _WORD.findall(name)]
        unknown = [w for w in words if w not in ordinary and w not in _NAME_CONNECTORS]
        if all(w in facts.words for w in unknown):
            cited.append(name)
        else:
            missing.append(name)
    for record in record_names:
        # word by word: a contact's first and last names come back as two fields
        words = [_normal_word(w) for w in _WORD.findall(record)]
        if words and all(w in facts.words for w in words):
            cited.append(record)
        elif words:
            missing.append(record)
    return tuple(dict.fromkeys(missing)), cited
