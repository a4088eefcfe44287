"""Typed LLM errors. All are 503s in the project's error shape: the caller can retry later."""

from __future__ import annotations

from okyaku.errors import DependencyUnavailable


class LLMUnavailable(DependencyUnavailable):
    """The LLM server cannot be reached, timed out, failed, or the circuit is open."""

    code = "llm_unavailable"


class LLMOutputInvalid(DependencyUnavailable):
    """The LLM answered, but not in the shape asked for, even after one repair attempt."""

    code = "llm_output_invalid"


class LLMToolCallInvalid(DependencyUnavailable):
    """The LLM called an unknown tool or with arguments its schema rejects (after one repair)."""

    code = "llm_tool_call_invalid"


class LLMRequestRejected(DependencyUnavailable):
    """The LLM server refused the request itself (4xx other than 429): a model or size problem."""

    code = "llm_request_rejected"
