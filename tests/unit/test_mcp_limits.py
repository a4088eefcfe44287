"""The MCP server's limits as pure logic: the per-key rate window, the result size cap, the
record URIs, and the tool contract's argument schemas."""

from __future__ import annotations

import json
import uuid

import pytest

from okyaku.errors import NotFound, RateLimited, ValidationFailed
from okyaku.mcp.api import RateLimiter
from okyaku.mcp.service import cap_result, parse_record_uri, record_uri
from okyaku.mcp.tools import TOOLS, ProposeChangeArgs, QueryCrmArgs


def test_a_key_gets_its_limit_per_minute_then_a_retry_after_until_the_window_ends() -> None:
    now = [100.0]
    limiter = RateLimiter(3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("key-a")
    now[0] = 115.0
    with pytest.raises(RateLimited) as refused:
        limiter.check("key-a")
    assert refused.value.retry_after_s == 45
    limiter.check("key-b")  # another key has its own window
    now[0] = 160.0
    limiter.check("key-a")  # a new minute


def test_a_large_result_loses_rows_not_values_and_says_so() -> None:
    rows = [[f"deal {i}", i, "x" * 50] for i in range(2000)]
    result = {"answer": "2,000 deals", "table": {"columns": ["name", "n", "note"], "rows": rows}}
    capped = cap_result(result, 20_000)
    assert len(json.dumps(capped)) <= 20_000
    kept = capped["table"]["rows"]
    assert kept == rows[: len(kept)] and 0 < len(kept) < 2000
    assert capped["truncated"]["dropped_items"] == 2000 - len(kept)
    assert capped["answer"] == "2,000 deals"
    small = {"answer": "ok"}
    assert cap_result(small, 20_000) is small


def test_a_result_that_cannot_be_cut_small_enough_is_refused() -> None:
    with pytest.raises(ValidationFailed) as refused:
        cap_result({"text": "x" * 50_000}, 10_000)
    assert refused.value.code == "result_too_large"


def test_record_uris_round_trip_and_anything_else_is_not_found() -> None:
    record_id = uuid.uuid4()
    assert parse_record_uri(record_uri("deal", record_id)) == ("deal", record_id)
    for uri in ("okyaku://planet/" + str(record_id), "okyaku://deal/not-a-uuid", "https://deal/" + str(record_id)):
        with pytest.raises(NotFound):
            parse_record_uri(uri)


def test_every_tool_schema_is_an_object_that_refuses_unknown_arguments() -> None:
    for spec in TOOLS:
        schema = spec.input_schema()
        assert schema["type"] == "object" and schema["additionalProperties"] is False, spec.name
    assert {"question", "plan"} <= set(QueryCrmArgs.model_json_schema()["properties"])
    with pytest.raises(ValueError):
        ProposeChangeArgs.model_validate({"type": "deal", "changes": {}, "reasoning": "why not"})
