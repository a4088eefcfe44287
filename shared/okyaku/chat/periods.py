"""Phrases of time and number in questions ("this month", "last 30 days", "next Tuesday",
"in 2025", "five") → the plan's date values. Pure; used by the fallback parser."""

from __future__ import annotations

import re
from datetime import date

from okyaku.chat.dates import WEEKDAYS
from okyaku.chat.plan import DateRange, RelativeDate

NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "sixty": 60,
    "ninety": 90,
}
NUMBER = r"(\d{1,4}|" + "|".join(NUMBER_WORDS) + r"|a|an)"
UNIT = r"(days?|weeks?|months?)"


def number(word: str) -> int:
    if word in ("a", "an"):
        return 1
    return int(word) if word.isdigit() else NUMBER_WORDS[word]


def months_back_in_days(months: int, today: date) -> int:
    index = today.year * 12 + today.month - 1 - months
    year, month = index // 12, index % 12 + 1
    day = min(
        today.day,
        [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][
            month - 1
        ],
    )
    return (today - date(year, month, day)).days


def span_days(count: int, unit: str, today: date) -> int:
    if unit.startswith("day"):
        return count
    if unit.startswith("week"):
        return 7 * count
    return months_back_in_days(count, today)


_SIMPLE = {
    "today": "today",
    "yesterday": "yesterday",
    "tomorrow": "tomorrow",
}


def parse_period(phrase: str, today: date) -> RelativeDate | DateRange | None:
    """The period a phrase names, or None when it names none (or one we cannot pin down)."""
    text = phrase.strip().lower()
    text = re.sub(r"^(in|during|over|within|on|by) ", "", text)
    text = re.sub(r"^the ", "", text)
    if text in _SIMPLE:
        return RelativeDate(relative=_SIMPLE[text])
    match = re.fullmatch(r"(this|last|next|current|previous|past) (week|month|quarter|year)", text)
    if match:
        which = {"current": "this", "previous": "last", "past": "last"}.get(match.group(1), match.group(1))
        return RelativeDate(relative=f"{which}_{match.group(2)}")
    match = re.fullmatch(r"(last|past|next|coming) " + NUMBER + " " + UNIT, text)
    if match:
        days = span_days(number(match.group(2)), match.group(3), today)
        kind = "last_n_days" if match.group(1) in ("last", "past") else "next_n_days"
        return RelativeDate(relative=kind, n=days)
    match = re.fullmatch(r"((?:19|20)\d\d)", text)
    if match:
        year = int(match.group(1))
        return DateRange(start=f"{year}-01-01", end=f"{year + 1}-01-01")
    match = re.fullmatch(r"(this |next |last )?(" + "|".join(WEEKDAYS) + ")", text)
    if match:
        which = (match.group(1) or "next ").strip()
        if which == "this":
            which = "next"  # "this Friday" said on a Monday: the coming one
        kind = "last_weekday" if which == "last" else "next_weekday"
        return RelativeDate(relative=kind, weekday=match.group(2))
    return None


def describe_period(phrase: str) -> str:
    return re.sub(r"^(in|during|over|within|on|by) ", "", phrase.strip().lower())
