"""Pydantic validation errors as the field details of a 422 (``okyaku.errors.ValidationFailed``).

One place decides how a location becomes a field name and how a message reads, so every API,
tool and LLM answer reports invalid input the same way."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from okyaku.errors import field_error

# What pydantic puts before the message of a ``ValueError`` raised in a validator.
_VALUE_ERROR_PREFIX = "Value error, "


def field_path(location: Iterable[Any], *, prefix: str = "", whole: str = "(input)") -> str:
    """``prefix.a.0.b`` for a location ``("a", 0, "b")``; ``whole`` when there is nothing to name."""
    parts = [p for p in (prefix, *(str(part) for part in location)) if p != ""]
    return ".".join(parts) or whole


def field_details(
    errors: ValidationError | Iterable[Mapping[str, Any]],
    *,
    prefix: str = "",
    whole: str = "(input)",
    drop_sources: Collection[str] = (),
) -> list[dict[str, str]]:
    """``[{"field", "message", "type"}]`` for each error.

    ``prefix`` names what was validated (``"context"`` gives ``context.deal_id``); ``whole`` is the
    field of an error about the input as a whole; ``drop_sources`` are leading location parts that
    only say where the value came from (FastAPI's ``body``/``query``/...)."""
    items = errors.errors() if isinstance(errors, ValidationError) else errors
    details = []
    for error in items:
        location = tuple(error.get("loc", ()))
        if len(location) > 1 and location[0] in drop_sources:
            location = location[1:]
        message = str(error.get("msg", "")).removeprefix(_VALUE_ERROR_PREFIX)
        details.append(
            field_error(field_path(location, prefix=prefix, whole=whole), message, str(error.get("type", "")))
        )
    return details
