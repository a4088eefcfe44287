"""EventBridge event patterns: checking one as EventBridge would, and matching events with it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class EventPatternError(ValueError):
    """An event pattern EventBridge would refuse."""


_PATTERN_OPERATORS = frozenset({"prefix", "suffix", "anything-but", "exists", "equals-ignore-case", "numeric"})
_NUMERIC_OPERATORS: Mapping[str, Any] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def check_event_pattern(pattern: Any, where: str) -> None:
    """Refuse what EventBridge would refuse (and what ``event_pattern_matches`` cannot run)."""
    if not isinstance(pattern, dict) or not pattern:
        raise EventPatternError(f"{where}: an event pattern is a non-empty object")
    for key, condition in pattern.items():
        if isinstance(condition, dict):
            check_event_pattern(condition, f"{where}.{key}")
        elif isinstance(condition, list) and condition:
            for matcher in condition:
                if isinstance(matcher, dict):
                    unknown = set(matcher) - _PATTERN_OPERATORS
                    if len(matcher) != 1 or unknown:
                        raise EventPatternError(f"{where}.{key}: unsupported matcher {matcher!r}")
        else:
            raise EventPatternError(f"{where}.{key}: a pattern's leaves are non-empty arrays")


def event_pattern_matches(pattern: Mapping[str, Any], event: Any) -> bool:
    """EventBridge content filtering: every field of the pattern must match the event."""
    for key, condition in pattern.items():
        present = isinstance(event, dict) and key in event
        value = event[key] if present else None
        if isinstance(condition, dict):
            if not (present and isinstance(value, dict) and event_pattern_matches(condition, value)):
                return False
        elif not _field_matches(condition, present, value):
            return False
    return True


def _field_matches(matchers: list[Any], present: bool, value: Any) -> bool:
    values = value if isinstance(value, list) else [value]
    for matcher in matchers:
        if isinstance(matcher, dict) and "exists" in matcher:
            if bool(matcher["exists"]) == present:
                return True
        elif present and any(_value_matches(matcher, v) for v in values):
            return True
    return False


def _value_matches(matcher: Any, value: Any) -> bool:
    if not isinstance(matcher, dict):
        return bool(matcher == value and type(matcher) is type(value)) or (
            isinstance(matcher, int | float) and isinstance(value, int | float) and matcher == value
        )
    (operator, argument), *_ = matcher.items()
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(argument)
    if operator == "suffix":
        return isinstance(value, str) and value.endswith(argument)
    if operator == "equals-ignore-case":
        return isinstance(value, str) and value.lower() == str(argument).lower()
    if operator == "anything-but":
        excluded = argument if isinstance(argument, list) else [argument]
        if isinstance(argument, dict):
            return not _value_matches(argument, value)
        return not any(_value_matches(item, value) for item in excluded)
    if operator == "numeric":
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        pairs = list(zip(argument[::2], argument[1::2], strict=True))
        return all(_NUMERIC_OPERATORS[op](value, bound) for op, bound in pairs)
    return False
