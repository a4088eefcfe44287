"""EventBridge schedule expressions: ``rate(...)`` and ``cron(...)`` parsed, and their next fire time."""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta


class ScheduleExpressionError(ValueError):
    """Not a valid EventBridge ``rate(...)`` or ``cron(...)`` expression."""


_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class RateExpression:
    """``rate(5 minutes)``: fires every interval, counted from when the rule started."""

    interval: timedelta

    def next_fire(self, after: datetime, start: datetime | None = None) -> datetime:
        anchor = start or after
        if after < anchor:
            return anchor + self.interval
        periods = int((after - anchor) / self.interval) + 1
        return anchor + periods * self.interval


def parse_rate(expression: str) -> RateExpression:
    found = re.fullmatch(r"\s*rate\(\s*(\d+)\s+([a-z]+)\s*\)\s*", expression)
    if not found:
        raise ScheduleExpressionError(f"{expression!r}: expected rate(<value> <unit>)")
    value, unit = int(found.group(1)), found.group(2)
    singular = unit.rstrip("s")
    if singular not in _RATE_UNITS or value < 1:
        raise ScheduleExpressionError(f"{expression!r}: the unit is minute(s), hour(s) or day(s), value >= 1")
    # EventBridge refuses "rate(1 minutes)" and "rate(5 minute)".
    if (value == 1) != (unit == singular):
        wanted = singular if value == 1 else singular + "s"
        raise ScheduleExpressionError(f"{expression!r}: write rate({value} {wanted})")
    return RateExpression(timedelta(seconds=value * _RATE_UNITS[singular]))


_MONTHS = {calendar.month_abbr[number].upper(): number for number in range(1, 13)}
_WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
MAX_YEAR = 2199


def _cron_weekday(day: date) -> int:
    """EventBridge numbers days 1=SUN ... 7=SAT."""
    return (day.weekday() + 1) % 7 + 1


def _parse_value(token: str, low: int, high: int, names: Mapping[str, int], where: str) -> int:
    token = token.upper()
    if token in names:
        return names[token]
    if not token.isdigit():
        raise ScheduleExpressionError(f"{where}: {token!r} is not a value")
    value = int(token)
    if not low <= value <= high:
        raise ScheduleExpressionError(f"{where}: {value} is outside {low}-{high}")
    return value


def _parse_field(text: str, low: int, high: int, where: str, names: Mapping[str, int] | None = None) -> frozenset[int]:
    names = names or {}
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleExpressionError(f"{where}: empty list item in {text!r}")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ScheduleExpressionError(f"{where}: bad step in {item!r}")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start = _parse_value(first, low, high, names, where)
            end = _parse_value(last, low, high, names, where)
            if end < start:
                raise ScheduleExpressionError(f"{where}: range {base!r} runs backwards")
        else:
            start = _parse_value(base, low, high, names, where)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class _DayOfMonth:
    any: bool = False  # "?"
    days: frozenset[int] = frozenset()
    last: bool = False  # L
    last_weekday: bool = False  # LW
    nearest_weekday: frozenset[int] = frozenset()  # 15W

    def matches(self, day: date) -> bool:
        last_day = calendar.monthrange(day.year, day.month)[1]
        if day.day in self.days or (self.last and day.day == last_day):
            return True
        if self.last_weekday and day == _nearest_weekday(day.year, day.month, last_day):
            return True
        return any(day == _nearest_weekday(day.year, day.month, n) for n in self.nearest_weekday if n <= last_day)


def _nearest_weekday(year: int, month: int, day_number: int) -> date:
    """The weekday nearest to the given day, without leaving the month (Quartz's ``W``)."""
    day = date(year, month, day_number)
    last_day = calendar.monthrange(year, month)[1]
    if day.weekday() == 5:  # Saturday -> Friday, or Monday when the 1st
        return day + timedelta(days=2) if day_number == 1 else day - timedelta(days=1)
    if day.weekday() == 6:  # Sunday -> Monday, or Friday when the last day
        return day - timedelta(days=2) if day_number == last_day else day + timedelta(days=1)
    return day


@dataclass(frozen=True)
class _DayOfWeek:
    any: bool = False  # "?"
    days: frozenset[int] = frozenset()
    last_of: frozenset[int] = frozenset()  # 6L: the last Friday
    nth: frozenset[tuple[int, int]] = frozenset()  # 2#1: the first Monday

    def matches(self, day: date) -> bool:
        weekday = _cron_weekday(day)
        if weekday in self.days:
            return True
        if weekday in self.last_of and day.day + 7 > calendar.monthrange(day.year, day.month)[1]:
            return True
        return (weekday, (day.day - 1) // 7 + 1) in self.nth


def _parse_day_of_month(text: str) -> _DayOfMonth:
    where = "day-of-month"
    if text == "?":
        return _DayOfMonth(any=True)
    days: set[int] = set()
    nearest: set[int] = set()
    last = last_weekday = False
    for item in text.split(","):
        if item.upper() == "L":
            last = True
        elif item.upper() == "LW":
            last_weekday = True
        elif re.fullmatch(r"\d+W", item.upper()):
            nearest.add(_parse_value(item[:-1], 1, 31, {}, where))
        else:
            days.update(_parse_field(item, 1, 31, where))
    return _DayOfMonth(days=frozenset(days), last=last, last_weekday=last_weekday, nearest_weekday=frozenset(nearest))


def _parse_day_of_week(text: str) -> _DayOfWeek:
    where = "day-of-week"
    if text == "?":
        return _DayOfWeek(any=True)
    days: set[int] = set()
    last_of: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for item in text.split(","):
        upper = item.upper()
        if upper == "L":  # alone, L is the last day of the week: Saturday
            days.add(7)
        elif upper.endswith("L"):
            last_of.add(_parse_value(upper[:-1], 1, 7, _WEEKDAYS, where))
        elif "#" in upper:
            weekday, _, number = upper.partition("#")
            if not number.isdigit() or not 1 <= int(number) <= 5:
                raise ScheduleExpressionError(f"{where}: {item!r} needs #1 to #5")
            nth.add((_parse_value(weekday, 1, 7, _WEEKDAYS, where), int(number)))
        else:
            days.update(_parse_field(item, 1, 7, where, _WEEKDAYS))
    return _DayOfWeek(days=frozenset(days), last_of=frozenset(last_of), nth=frozenset(nth))


@dataclass(frozen=True)
class CronExpression:
    """``cron(minutes hours day-of-month month day-of-week year)``, evaluated in UTC."""

    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: _DayOfMonth
    months: frozenset[int]
    day_of_week: _DayOfWeek
    years: frozenset[int]

    def matches_day(self, day: date) -> bool:
        if day.year not in self.years or day.month not in self.months:
            return False
        if self.day_of_month.any:
            return self.day_of_week.matches(day)
        return self.day_of_month.matches(day)

    def next_fire(self, after: datetime, start: datetime | None = None) -> datetime | None:
        """The first matching minute strictly after ``after`` (UTC); None when there is none left."""
        moment = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = moment.date()
        hours = sorted(self.hours)
        minutes = sorted(self.minutes)
        last_year = max(self.years)
        while day.year <= last_year:
            if day.year not in self.years:
                day = date(day.year + 1, 1, 1)
                continue
            if day.month not in self.months:
                day = date(day.year + (day.month == 12), day.month % 12 + 1, 1)
                continue
            if self.matches_day(day):
                for hour in hours:
                    for minute in minutes:
                        candidate = datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)
                        if candidate >= moment:
                            return candidate
            day += timedelta(days=1)
        return None


def parse_cron(expression: str) -> CronExpression:
    found = re.fullmatch(r"\s*cron\((.*)\)\s*", expression)
    if not found:
        raise ScheduleExpressionError(f"{expression!r}: expected cron(...)")
    fields = found.group(1).split()
    if len(fields) != 6:
        raise ScheduleExpressionError(
            f"{expression!r}: cron needs 6 fields (minutes hours day-of-month month day-of-week year)"
        )
    minutes, hours, day_of_month, month, day_of_week, year = fields
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ScheduleExpressionError(f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'")
    return CronExpression(
        minutes=_parse_field(minutes, 0, 59, "minutes"),
        hours=_parse_field(hours, 0, 23, "hours"),
        day_of_month=_parse_day_of_month(day_of_month),
        months=_parse_field(month, 1, 12, "month", _MONTHS),
        day_of_week=_parse_day_of_week(day_of_week),
        years=_parse_field(year, 1970, MAX_YEAR, "year"),
    )


def parse_schedule_expression(expression: str) -> RateExpression | CronExpression:
    text = expression.strip()
    if text.startswith("rate("):
        return parse_rate(text)
    if text.startswith("cron("):
        return parse_cron(text)
    raise ScheduleExpressionError(f"{expression!r}: expected rate(...) or cron(...)")
