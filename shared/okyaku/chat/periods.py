"""Phrases of time and number in questions ("this month", "last 30 days", "next Tuesday",
"in 2025", "five") → the plan's date values. Pure; used by the fallback parser."""

from __future__ import annotations

import re
from datetime import date

from okyaku.chat.dates import WEEKDAYS, resolve_relative
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
    return parse_span(text, today)


MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH_ABBREVIATIONS = {m[:3]: i + 1 for i, m in enumerate(MONTHS)} | {"sept": 9}
MONTH = r"(?:" + "|".join(MONTHS) + "|" + "|".join(sorted(_MONTH_ABBREVIATIONS, key=len, reverse=True)) + r")"
YEAR = r"(?:19|20)\d\d"
# A point in time a range can start or end at: an ISO date, "June", "June 2025", "March 3".
POINT = r"(?:\d{4}-\d\d-\d\d|" + MONTH + r"(?: \d{1,2}(?:st|nd|rd|th)?)?(?: " + YEAR + r")?)"


def _month_number(word: str) -> int:
    return MONTHS.index(word) + 1 if word in MONTHS else _MONTH_ABBREVIATIONS[word]


def _point(text: str, today: date, *, past: bool) -> tuple[date, date] | None:
    """[start, end) of a point phrase; a month without a year is this year's (or, with ``past``,
    the latest one that has begun)."""
    if re.fullmatch(r"\d{4}-\d\d-\d\d", text):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        return day, date.fromordinal(day.toordinal() + 1)
    match = re.fullmatch(r"(" + MONTH + r")(?: (\d{1,2})(?:st|nd|rd|th)?)?(?: (" + YEAR + r"))?", text)
    if not match:
        return None
    month = _month_number(match.group(1))
    year = int(match.group(3)) if match.group(3) else today.year
    if not match.group(3) and past and (month > today.month):
        year -= 1
    try:
        if match.group(2):
            day = date(year, month, int(match.group(2)))
            return day, date.fromordinal(day.toordinal() + 1)
        return date(year, month, 1), date(year + month // 12, month % 12 + 1, 1)
    except ValueError:
        return None


def _range(start: date | None, end: date | None) -> DateRange:
    return DateRange(start=start.isoformat() if start else None, end=end.isoformat() if end else None)


def parse_span(phrase: str, today: date) -> RelativeDate | DateRange | None:
    """Periods beyond the relative ones: quarters, months, "since …", "between … and …",
    "before/after …", year to date, "N days ago"."""
    text = phrase.strip().lower()
    match = re.fullmatch(r"q([1-4])(?: (?:of )?(" + YEAR + r"))?", text)
    if match:
        year = int(match.group(2)) if match.group(2) else today.year
        first = 3 * (int(match.group(1)) - 1) + 1
        end = date(year + 1, 1, 1) if first == 10 else date(year, first + 3, 1)
        return _range(date(year, first, 1), end)
    match = re.fullmatch(
        r"(?:the )?(first|second|third|fourth|1st|2nd|3rd|4th) quarter(?: (?:of )?(" + YEAR + r"))?", text
    )
    if match:
        index = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4}[
            match.group(1)
        ]
        return parse_span(f"q{index}" + (f" {match.group(2)}" if match.group(2) else ""), today)
    if text in ("year to date", "ytd", "so far this year", "this year so far"):
        return _range(date(today.year, 1, 1), date.fromordinal(today.toordinal() + 1))
    if text in ("month to date", "mtd", "so far this month", "this month so far"):
        return _range(today.replace(day=1), date.fromordinal(today.toordinal() + 1))
    match = re.fullmatch(r"(" + NUMBER + r") (days?|weeks?) ago", text)
    if match:
        days = span_days(number(match.group(1)), match.group(3), today)
        return RelativeDate(relative="n_days_ago", n=days)
    match = re.fullmatch(r"(?:between|from) (" + POINT + r") (?:and|to|until|through) (" + POINT + r")", text)
    if match:
        opening, closing = _point(match.group(1), today, past=False), _point(match.group(2), today, past=False)
        if opening is None or closing is None or closing[1] <= opening[0]:
            return None
        return _range(opening[0], closing[1])
    match = re.fullmatch(r"(since|after|from|before|until|till|up to) (.+)", text)
    if match:
        word, rest = match.group(1), match.group(2)
        point = _point(rest, today, past=word in ("since", "from"))
        if point is None:
            relative = parse_period(rest, today)
            if relative is None:
                return None
            resolved = resolve_relative(relative, today) if isinstance(relative, RelativeDate) else None
            if resolved is None or resolved.start is None or resolved.end is None:
                return None
            point = (resolved.start, resolved.end)
        if word in ("since", "from"):
            return _range(point[0], None)
        if word == "after":
            return _range(point[1], None)
        return _range(None, point[0])
    point = _point(text, today, past=False)
    if point is not None:
        return _range(*point)
    return None


def describe_period(phrase: str) -> str:
    return re.sub(r"^(in|during|over|within|on|by) ", "", phrase.strip().lower())
