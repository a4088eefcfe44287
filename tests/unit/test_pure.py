"""Pure functions of the common layer."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from okyaku.crm.custom_properties import infer_value_type, merge_custom_properties
from okyaku.crm.listing import decode_cursor, encode_cursor, text_query
from okyaku.errors import ValidationFailed
from okyaku.events.outbox import backoff
from okyaku.http import expected_version


def test_cursor_round_trip():
    row_id = uuid.uuid4()
    assert decode_cursor(encode_cursor("-amount", "12.50", row_id)) == ("-amount", "12.50", row_id)


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", encode_cursor("x", 1, uuid.uuid4())[:-4]])
def test_bad_cursors_are_validation_errors(cursor):
    with pytest.raises(ValidationFailed):
        decode_cursor(cursor)


def test_text_query_makes_prefix_terms_and_escapes_quotes():
    assert text_query("Acme  sal") == "'acme':* & 'sal':*"
    assert text_query("o'brien") == "'o':* & 'brien':*"
    assert text_query("  ;; ") is None


def test_backoff_grows_and_is_capped():
    assert backoff(1) == timedelta(seconds=10)
    assert backoff(3) == timedelta(seconds=40)
    assert backoff(50) == timedelta(minutes=30)


def test_custom_property_merge_and_types():
    assert merge_custom_properties({"a": 1, "b": 2}, {"b": None, "c": "x"}) == {"a": 1, "c": "x"}
    assert [infer_value_type(v) for v in (True, 3, 2.5, "2024-05-01", "hello")] == [
        "boolean",
        "number",
        "number",
        "date",
        "string",
    ]


@pytest.mark.parametrize(("header", "version"), [(None, None), ("3", 3), ('"3"', 3), ('W/"12"', 12)])
def test_if_match_versions(header, version):
    assert expected_version(header) == version


def test_if_match_garbage_is_422():
    with pytest.raises(ValidationFailed):
        expected_version("*")
