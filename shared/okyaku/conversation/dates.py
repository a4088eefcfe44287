"""Explicit date expressions in sales notes, resolved against the activity's own date.

Recognised (case-insensitive): ISO dates (2026-03-15); numeric month/day (3/15, 3/15/2026: US
order); month names with a day (March 15, 15 March, Mar 15th, 2026); weekdays (Friday, by Friday,
this Friday, next Friday); today, tonight, EOD, tomorrow, the day after tomorrow; in N days/weeks;
next week, end of (the/this) week, end of (the/this/next) month, end of the quarter / end of Q3,
end of <month>. Anything vaguer ("soon", "in the spring", a bare "Q3") is not a date here.

Conventions (documented, not guessed per text): a weekday alone or with "this"/"by"/"on" is its
next occurrence after the activity's day; "next <weekday>" is that weekday in the following
calendar week (weeks start on Monday); "next week" is the Friday of the following week (a
deadline); a month/day without a year is the next one on or after 30 days before the activity.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

MONTHS = {
    name: index
    for index, names in enumerate(
        [
            (),
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
WEEKDAYS = {
    "monday": 0,
    "mon": 0,
    "tuesday": 1,
    "tues": 1,
    "tue": 1,
    "wednesday": 2,
    "wed": 2,
    "thursday": 3,
    "thurs": 3,
    "thu": 3,
    "friday": 4,
    "fri": 4,
    "saturday": 5,
    "sunday": 6,
}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "couple of": 2}

_MONTH = r"(?P<month>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>[0-3]?\d)(?:st|nd|rd|th)?"
_YEAR = r"(?:,?\s+(?P<year>20\d\d))?"
_WEEKDAY = r"(?P<weekday>" + "|".join(sorted(WEEKDAYS, key=len, reverse=True)) + r")\b\.?"
_COUNT = r"(?P<count>\d{1,2}|a|an|one|two|three|four|five|six|couple of)"

_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("iso", re.compile(r"\b(?P<year>20\d\d)-(?P<month>[01]\d)-(?P<day>[0-3]\d)\b")),
    (
        "numeric",
        re.compile(
            r"(?<![\d/$€£.,])(?P<month>1[0-2]|0?[1-9])/(?P<day>3[01]|[12]\d|0?[1-9])(?:/(?P<year>(?:20)?\d\d))?(?![\d/%])"
        ),
    ),
    ("month_day", re.compile(r"\b" + _MONTH + r"\s+" + _DAY + r"\b" + _YEAR, re.IGNORECASE)),
    ("day_month", re.compile(r"\b" + _DAY + r"\s+(?:of\s+)?" + _MONTH + r"\b" + _YEAR, re.IGNORECASE)),
    ("end_of_month_name", re.compile(r"\b(?:the\s+)?end\s+of\s+" + _MONTH + r"\b", re.IGNORECASE)),
    (
        "end_of_period",
        re.compile(
            r"\b(?:the\s+)?end\s+of\s+(?:the\s+|this\s+|(?P<next>next)\s+)?(?P<period>week|month|quarter|q[1-4])\b",
            re.IGNORECASE,
        ),
    ),
    ("eow", re.compile(r"\b(?P<period>eow|eom|eoq)\b", re.IGNORECASE)),
    ("next_week", re.compile(r"\bnext\s+week\b", re.IGNORECASE)),
    (
        "in_count",
        re.compile(r"\b(?:in|within)\s+(?:the\s+next\s+)?" + _COUNT + r"\s+(?P<unit>days?|weeks?)\b", re.IGNORECASE),
    ),
    ("weekday", re.compile(r"\b(?:(?P<qualifier>next|this|coming|this\s+coming)\s+)?" + _WEEKDAY, re.IGNORECASE)),
    (
        "relative_day",
        re.compile(
            r"\b(?P<word>the\s+day\s+after\s+tomorrow|tomorrow|today|tonight|eod|end\s+of\s+(?:the\s+)?day)\b",
            re.IGNORECASE,
        ),
    ),
]


@dataclass(frozen=True)
class FoundDate:
    start: int
    end: int
    expression: str
    value: date


def _friday_of_week(day: date, weeks_ahead: int = 0) -> date:
    monday = day - timedelta(days=day.weekday()) + timedelta(weeks=weeks_ahead)
    return monday + timedelta(days=4)


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _quarter_end(year: int, quarter: int) -> date:
    return _month_end(year, quarter * 3)


def _with_inferred_year(anchor: date, month: int, day: int) -> date | None:
    for year in (anchor.year, anchor.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            return None
        if candidate >= anchor - timedelta(days=30):
            return candidate
    return None


def _explicit(anchor: date, month: int, day: int, year: str | None) -> date | None:
    if year is None:
        return _with_inferred_year(anchor, month, day)
    full = int(year) + (2000 if len(year) == 2 else 0)
    try:
        return date(full, month, day)
    except ValueError:
        return None


def _resolve(kind: str, match: re.Match[str], anchor: date) -> date | None:
    groups = match.groupdict()
    if kind in ("iso", "numeric"):
        return _explicit(anchor, int(groups["month"]), int(groups["day"]), groups.get("year"))
    if kind in ("month_day", "day_month"):
        return _explicit(anchor, MONTHS[groups["month"].lower()], int(groups["day"]), groups.get("year"))
    if kind == "end_of_month_name":
        month = MONTHS[groups["month"].lower()]
        year = anchor.year if month >= anchor.month else anchor.year + 1
        return _month_end(year, month)
    if kind in ("end_of_period", "eow"):
        period = groups["period"].lower()
        ahead = 1 if groups.get("next") else 0
        if period in ("week", "eow"):
            return _friday_of_week(anchor, ahead)
        if period in ("month", "eom"):
            month_index = anchor.month - 1 + ahead
            return _month_end(anchor.year + month_index // 12, month_index % 12 + 1)
        quarter = (anchor.month - 1) // 3 + 1
        if period.startswith("q") and len(period) == 2:
            wanted = int(period[1])
            return _quarter_end(anchor.year if wanted >= quarter else anchor.year + 1, wanted)
        quarter_index = quarter - 1 + ahead
        return _quarter_end(anchor.year + quarter_index // 4, quarter_index % 4 + 1)
    if kind == "next_week":
        return _friday_of_week(anchor, 1)
    if kind == "in_count":
        raw = groups["count"].lower()
        count = int(raw) if raw.isdigit() else _NUMBERS[raw]
        days = count * (7 if groups["unit"].lower().startswith("week") else 1)
        return anchor + timedelta(days=days)
    if kind == "weekday":
        weekday = WEEKDAYS[groups["weekday"].lower().rstrip(".")]
        qualifier = (groups.get("qualifier") or "").lower()
        if qualifier == "next":
            monday_next = anchor - timedelta(days=anchor.weekday()) + timedelta(weeks=1)
            return monday_next + timedelta(days=weekday)
        ahead = (weekday - anchor.weekday()) % 7 or 7
        return anchor + timedelta(days=ahead)
    if kind == "relative_day":
        word = " ".join(groups["word"].lower().split())
        if word == "the day after tomorrow":
            return anchor + timedelta(days=2)
        return anchor + timedelta(days=1) if word == "tomorrow" else anchor
    return None


# Short weekday forms are also ordinary words or names: only with a qualifier or a preposition.
_AMBIGUOUS_WEEKDAYS = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
_WEEKDAY_PREFIX = re.compile(r"(?:\b(?:by|on|until|before|from|this|next|coming|due)\s+)$", re.IGNORECASE)


def find_dates(text: str, anchor: date) -> list[FoundDate]:
    """Every date expression in ``text``, resolved against ``anchor``; overlapping matches keep the
    earliest, then the longest."""
    found: list[FoundDate] = []
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            if kind == "weekday":
                word = match.group("weekday").lower().rstrip(".")
                if word in _AMBIGUOUS_WEEKDAYS and not (
                    match.group("qualifier") or _WEEKDAY_PREFIX.search(text[: match.start()])
                ):
                    continue
            value = _resolve(kind, match, anchor)
            if value is not None:
                found.append(FoundDate(match.start(), match.end(), match.group(0), value))
    found.sort(key=lambda d: (d.start, -(d.end - d.start)))
    kept: list[FoundDate] = []
    for item in found:
        if kept and item.start < kept[-1].end:
            continue
        kept.append(item)
    return kept
