"""Relative dates → concrete periods, against the clock the chat service is given.

Every period is half-open, ``[start, end)``, at midnight in the organization's time zone, so
"this month" on a timestamp column and on a date column mean the same days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from okyaku.chat.plan import DateRange, RelativeDate

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class DateResolutionError(ValueError):
    pass


@dataclass(frozen=True)
class Period:
    start: date | None  # inclusive
    end: date | None  # exclusive

    def start_at(self, zone: ZoneInfo) -> datetime | None:
        return None if self.start is None else datetime.combine(self.start, time.min, zone)

    def end_at(self, zone: ZoneInfo) -> datetime | None:
        return None if self.end is None else datetime.combine(self.end, time.min, zone)

    def describe(self) -> str:
        if self.start and self.end:
            last = self.end - timedelta(days=1)
            return self.start.isoformat() if last == self.start else f"{self.start.isoformat()} to {last.isoformat()}"
        if self.start:
            return f"from {self.start.isoformat()}"
        return f"before {self.end.isoformat()}" if self.end else "any time"


def _month_start(day: date, offset: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def _quarter_start(day: date, offset: int = 0) -> date:
    first = date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    return _month_start(first, 3 * offset)


def resolve_relative(value: RelativeDate, today: date) -> Period:
    kind, n = value.relative, value.n
    one = timedelta(days=1)
    if kind in ("last_n_days", "next_n_days", "n_days_ago") and n is None:
        raise DateResolutionError(f"'{kind}' needs n (a number of days)")
    if kind in ("next_weekday", "last_weekday") and value.weekday is None:
        raise DateResolutionError(f"'{kind}' needs a weekday")
    if kind == "today":
        return Period(today, today + one)
    if kind == "yesterday":
        return Period(today - one, today)
    if kind == "tomorrow":
        return Period(today + one, today + 2 * one)
    if kind in ("this_week", "last_week", "next_week"):
        monday = today - timedelta(days=today.weekday())
        shift = {"this_week": 0, "last_week": -1, "next_week": 1}[kind]
        start = monday + timedelta(weeks=shift)
        return Period(start, start + timedelta(weeks=1))
    if kind in ("this_month", "last_month", "next_month"):
        shift = {"this_month": 0, "last_month": -1, "next_month": 1}[kind]
        return Period(_month_start(today, shift), _month_start(today, shift + 1))
    if kind in ("this_quarter", "last_quarter", "next_quarter"):
        shift = {"this_quarter": 0, "last_quarter": -1, "next_quarter": 1}[kind]
        return Period(_quarter_start(today, shift), _quarter_start(today, shift + 1))
    if kind in ("this_year", "last_year", "next_year"):
        year = today.year + {"this_year": 0, "last_year": -1, "next_year": 1}[kind]
        return Period(date(year, 1, 1), date(year + 1, 1, 1))
    assert n is not None or kind in ("next_weekday", "last_weekday")
    days = max(n or 0, 1)
    if kind == "last_n_days":  # the n days ending today
        return Period(today - timedelta(days=days - 1), today + one)
    if kind == "next_n_days":  # the n days starting today
        return Period(today, today + timedelta(days=days))
    if kind == "n_days_ago":
        day = today - timedelta(days=n or 0)
        return Period(day, day + one)
    target = WEEKDAYS.index(value.weekday or "monday")
    if kind == "next_weekday":  # the next such day after today ("next Tuesday" on a Tuesday: in 7 days)
        ahead = (target - today.weekday()) % 7 or 7
        day = today + timedelta(days=ahead)
    else:
        back = (today.weekday() - target) % 7 or 7
        day = today - timedelta(days=back)
    return Period(day, day + one)


def resolve_range(value: DateRange) -> Period:
    try:
        start = date.fromisoformat(value.start[:10]) if value.start else None
        end = date.fromisoformat(value.end[:10]) if value.end else None
    except ValueError as error:
        raise DateResolutionError(f"not an ISO date: {error}") from error
    if start and end and end <= start:
        raise DateResolutionError("a date range must end after it starts")
    return Period(start, end)


def parse_point(value: str) -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError as error:
        raise DateResolutionError(f"not an ISO date: {value!r}") from error


def local_today(now: datetime, zone: ZoneInfo) -> date:
    return now.astimezone(zone).date()
