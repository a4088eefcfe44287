"""One error hierarchy for the whole project, mapped once to HTTP.

Every error renders as ``{"error": {"code", "message", "details"}}``.
"""

from __future__ import annotations

from typing import Any


class OkyakuError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(OkyakuError):
    status_code = 400
    code = "bad_request"


class Unauthorized(OkyakuError):
    status_code = 401
    code = "unauthorized"


class Forbidden(OkyakuError):
    status_code = 403
    code = "forbidden"


class NotFound(OkyakuError):
    status_code = 404
    code = "not_found"


class Conflict(OkyakuError):
    status_code = 409
    code = "conflict"


class ValidationFailed(OkyakuError):
    """422: ``details`` is a list of ``{"field", "message", "type"}``."""

    status_code = 422
    code = "validation_error"


class PayloadTooLarge(OkyakuError):
    status_code = 413
    code = "payload_too_large"


class RateLimited(OkyakuError):
    """429; ``retry_after_s`` becomes the ``Retry-After`` header."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int, details: Any = None, code: str | None = None) -> None:
        super().__init__(message, details=details, code=code)
        self.retry_after_s = retry_after_s


class DependencyUnavailable(OkyakuError):
    """503: a dependency (database, LLM, queue) is down or misbehaving."""

    status_code = 503
    code = "dependency_unavailable"


class FeatureDisabled(OkyakuError):
    status_code = 503
    code = "feature_disabled"


def field_error(field: str, message: str, type_: str = "value_error") -> dict[str, str]:
    return {"field": field, "message": message, "type": type_}


UNEXPECTED_MESSAGE = "an unexpected error occurred; the details are in the logs"


def public_error(error: BaseException) -> dict[str, str]:
    """What a client (or a stored record a client reads) may be told about ``error``.

    Our own errors carry messages written for clients; anything else (a driver's text with SQL,
    hosts or users in it) becomes a stable code and message, and its details go to the logs.
    """
    if isinstance(error, OkyakuError):
        return {"code": error.code, "message": error.message}
    return {"code": "internal_error", "message": UNEXPECTED_MESSAGE}
