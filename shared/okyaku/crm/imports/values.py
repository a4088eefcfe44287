"""Cell values: the type a custom property column holds, a cell as that type's JSON value, and
cells of known fields in the form the schemas accept ("1,200" -> "1200"). Pure."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

CATEGORY_MAX_DISTINCT = 20
ENUM_FIELDS = frozenset({"lifecycle_stage", "lead_status", "type", "direction", "outcome"})
NUMBER_FIELDS = frozenset({"amount", "annual_revenue", "employee_count", "duration_minutes"})

BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False, "y": True, "n": False}
NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
INTEGER = re.compile(r"^[+-]?\d+$")
LEADING_ZERO = re.compile(r"^[+-]?0\d")  # "007", a postcode: text, not a number
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def is_iso_date(value: str) -> bool:
    """YYYY-MM-DD, optionally followed by a time, that Python can read."""
    if not ISO_DATE.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def infer_column_type(values: Iterable[str]) -> str | None:
    """number, boolean, date, category (few distinct, repeated values) or string; None if empty."""
    present = [v for v in values if v]
    if not present:
        return None
    distinct = set(present)
    if {v.lower() for v in distinct} <= BOOLEAN_WORDS.keys():
        return "boolean"
    if all(NUMBER.match(v) and not LEADING_ZERO.match(v) for v in distinct):
        return "number"
    if all(is_iso_date(v) for v in distinct):
        return "date"
    if (
        len(distinct) <= CATEGORY_MAX_DISTINCT
        and len(distinct) * 2 <= len(present)
        and max(len(v) for v in distinct) <= 60
    ):
        return "category"
    return "string"


def convert_custom_value(data_type: str, value: str) -> str | int | float | bool:
    """A cell as the JSON value of its property's type; ValueError when it does not fit."""
    if data_type == "number":
        if not NUMBER.match(value):
            raise ValueError(f"expected a number, got {value!r}")
        if INTEGER.match(value):
            return int(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is out of range")
        return number
    if data_type == "boolean":
        word = value.lower()
        if word in BOOLEAN_WORDS:
            return BOOLEAN_WORDS[word]
        if word in ("1", "0"):
            return word == "1"
        raise ValueError(f"expected true/false or yes/no, got {value!r}")
    if data_type == "date":
        if not is_iso_date(value):
            raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}")
        parsed = datetime.fromisoformat(value)
        return parsed.date().isoformat() if len(value) == 10 else parsed.isoformat()
    return value


THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")
DECIMAL_COMMA = re.compile(r"^[+-]?\d+,\d{1,2}$")


def normalize_cell(field_name: str, value: str) -> str:
    """Enum words as the schemas spell them; numbers without currency signs and thousands separators."""
    if field_name in ENUM_FIELDS:
        return re.sub(r"[\s\-]+", "_", value.strip().lower())
    if field_name in NUMBER_FIELDS:
        value = re.sub(r"[\s$€£¥]", "", value)
        if THOUSANDS.match(value):
            return value.replace(",", "")
        if DECIMAL_COMMA.match(value):
            return value.replace(",", ".")
    return value


def as_utc(value: Any) -> Any:
    """A naive date-time read as UTC (what the API assumes too)."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def same_value(a: Any, b: Any) -> bool:
    """Whether a column keeps its value (so the row changes nothing there)."""
    if a != b:
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        # As JSON: True and 1 (or 1 and 1.0) are different custom property values.
        return all(type(value) is type(b[key]) for key, value in a.items())
    return True
