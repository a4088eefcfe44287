"""How the gateway treats a failed call: which SDK errors are worth a retry (connection errors,
5xx, 429, malformed bodies), which are a generation that ran out of time (not retried: the model
is as slow on the next attempt), which are the server refusing this request or not serving the
endpoint at all, and how long to wait before the next attempt (exponential backoff with jitter, or
the server's Retry-After)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class MalformedResponse(Exception):
    """The server answered 200 with a body that is not a usable completion."""


class FailureKind(StrEnum):
    CONNECTION = "connection"  # refused, reset, dropped, connect timeout: retried
    SERVER = "server"  # 5xx: retried
    OVERLOADED = "overloaded"  # 429: retried after Retry-After
    MALFORMED = "malformed"  # 200 with a broken body: retried
    TIMEOUT = "timeout"  # accepted but not finished in time: not retried
    MODEL_MISSING = "model_missing"  # 404 naming the model
    UNSUPPORTED = "unsupported"  # 404/501: the server does not serve this endpoint
    CONTEXT = "context"  # 400 saying the prompt exceeds the context
    REJECTED = "rejected"  # any other 4xx


RETRIED = {FailureKind.CONNECTION, FailureKind.SERVER, FailureKind.OVERLOADED, FailureKind.MALFORMED}
# Failures that say the server is down or sick, so the breaker counts them; a refusal or an
# unsupported endpoint comes from a healthy server.
SERVER_SICK = RETRIED | {FailureKind.TIMEOUT}


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    reason: str
    status: int | None = None
    retry_after_s: float | None = None

    @property
    def transient(self) -> bool:
        return self.kind in RETRIED

    @property
    def counts_against_breaker(self) -> bool:
        return self.kind in SERVER_SICK

    @property
    def model_missing(self) -> bool:
        return self.kind is FailureKind.MODEL_MISSING


def classify_failure(error: Exception) -> Failure | None:
    """How an exception from the SDK should be treated; ``None`` for our own bugs (re-raised)."""
    import httpx
    import openai

    if isinstance(error, openai.APITimeoutError):
        cause = error.__cause__ or error.__context__
        if isinstance(cause, httpx.ConnectTimeout | httpx.PoolTimeout):
            return Failure(FailureKind.CONNECTION, "connection failed (connect timeout)")
        return Failure(FailureKind.TIMEOUT, "the request timed out")
    if isinstance(error, httpx.TimeoutException):  # raised while reading a stream
        return Failure(FailureKind.TIMEOUT, "the request timed out")
    if isinstance(error, httpx.TransportError):  # a stream cut off mid-answer
        return Failure(FailureKind.CONNECTION, f"connection failed ({type(error).__name__})")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__ or error.__context__
        return Failure(FailureKind.CONNECTION, f"connection failed ({type(cause).__name__ if cause else 'no answer'})")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        message = _error_message(error)
        if status == 429:
            return Failure(FailureKind.OVERLOADED, "the server is overloaded (429)", status, _retry_after(error))
        if status == 501:
            return Failure(FailureKind.UNSUPPORTED, f"not supported by the server (501): {message}", status)
        if status >= 500:
            return Failure(FailureKind.SERVER, f"server error {status}: {message}", status)
        if status == 404:
            # Ollama says 'model "x" not found'; a server without the endpoint says "File Not Found".
            if "model" in message.lower():
                return Failure(FailureKind.MODEL_MISSING, message, status)
            return Failure(FailureKind.UNSUPPORTED, f"not served by the server (404): {message}", status)
        if status == 400 and "context" in message.lower():
            return Failure(FailureKind.CONTEXT, message, status)
        return Failure(FailureKind.REJECTED, f"request rejected ({status}): {message}", status)
    if isinstance(error, MalformedResponse | ValueError | openai.APIResponseValidationError):
        return Failure(FailureKind.MALFORMED, f"malformed response: {error}")
    return None


def backoff_s(attempt: int, retry_after_s: float | None, *, base_s: float, max_s: float) -> float:
    """The wait before retry number ``attempt + 1``; never more than ``max_s``."""
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
