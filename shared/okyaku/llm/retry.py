"""How the gateway treats a failed call: which SDK errors are worth a retry (connection errors,
timeouts, 5xx, 429, malformed bodies), which are the server refusing this request, and how long
to wait before the next attempt (exponential backoff with jitter, or the server's Retry-After)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any


class MalformedResponse(Exception):
    """The server answered 200 with a body that is not a usable completion."""


@dataclass(frozen=True)
class Failure:
    transient: bool
    reason: str
    status: int | None = None
    retry_after_s: float | None = None
    model_missing: bool = False


def classify_failure(error: Exception) -> Failure | None:
    """How an exception from the SDK should be treated; ``None`` for our own bugs (re-raised)."""
    import openai

    if isinstance(error, openai.APITimeoutError):
        return Failure(True, "the request timed out")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error.__context__
        return Failure(True, f"connection failed ({type(cause).__name__ if cause else 'no answer'})")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = _error_message(error)
        if status == 429:
            return Failure(True, "the server is overloaded (429)", status, _retry_after(error))
        if status >= 500:
            return Failure(True, f"server error {status}: {message}", status)
        if status == 404:
            return Failure(False, message, status, model_missing=True)
        return Failure(False, f"request rejected ({status}): {message}", status)
    if isinstance(error, MalformedResponse | ValueError | openai.APIResponseValidationError):
        return Failure(True, f"malformed response: {error}")
    return None


def backoff_s(attempt: int, retry_after_s: float | None, *, base_s: float, max_s: float) -> float:
    """The wait before retry number ``attempt + 1``."""
    if retry_after_s is not None:
        return min(max(0.0, retry_after_s), max_s)
    ceiling = min(max_s, base_s * float(2**attempt))
    return ceiling * (0.5 + random.random() / 2)  # jitter, so callers do not retry in step


def _error_message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(error, "message", error))


def _retry_after(error: Any) -> float | None:
    try:
        value = error.response.headers.get("retry-after")
        return float(value) if value is not None else None
    except (AttributeError, ValueError):
        return None
