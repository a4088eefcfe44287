"""Typed LLM errors. All are 503s in the project's error shape: the caller can retry later or
degrade. Each code says what happened, so an operator reading a response or a log knows whether
the server is down (``llm_unavailable``), slow (``llm_timeout``), cannot do what was asked
(``llm_unsupported``, ``llm_context_exceeded``) or answered badly (``llm_output_invalid``,
``llm_output_truncated``).

The subclassing keeps ``except`` clauses written before these codes existed catching what they
should: a timeout or an unsupported endpoint is a kind of unavailability (callers degrade), a
truncated answer a kind of invalid output, a prompt too big for the context a refused request."""

from __future__ import annotations

from okyaku.errors import DependencyUnavailable


class LLMUnavailable(DependencyUnavailable):
    """The LLM server cannot be reached, failed, or the circuit is open."""

    code = "llm_unavailable"


class LLMTimeout(LLMUnavailable):
    """The server accepted the request but did not finish generating within the timeout. Not
    retried: a model that is too slow for the budget is as slow on the next attempt."""

    code = "llm_timeout"


class LLMUnsupported(LLMUnavailable):
    """The server does not serve this endpoint (404/501: e.g. embeddings on a llama.cpp server
    started without ``--embeddings``). Not transient: never retried, never counted by the breaker."""

    code = "llm_unsupported"


class LLMOutputInvalid(DependencyUnavailable):
    """The LLM answered, but not in the shape asked for, even after one repair attempt."""

    code = "llm_output_invalid"


class LLMOutputTruncated(LLMOutputInvalid):
    """The answer was cut off at ``max_tokens`` (``finish_reason == "length"``): a bigger budget or a
    smaller input is needed; re-sending the cut text for "repair" would not help."""

    code = "llm_output_truncated"


class LLMToolCallInvalid(DependencyUnavailable):
    """The LLM called an unknown tool or with arguments its schema rejects (after one repair)."""

    code = "llm_tool_call_invalid"


class LLMRequestRejected(DependencyUnavailable):
    """The LLM server refused the request itself (4xx other than 429): a model or size problem."""

    code = "llm_request_rejected"


class LLMContextExceeded(LLMRequestRejected):
    """The prompt plus the room kept for the answer would not fit the server's context window, so
    it was not sent (the server would silently cut it). Callers trim or chunk."""

    code = "llm_context_exceeded"
