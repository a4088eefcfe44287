"""The tool-argument validator."""

from okyaku.llm.schema_check import validate

SCHEMA = {
    "type": "object",
    "properties": {
        "deal_id": {"type": "string", "minLength": 3},
        "amount": {"type": "number", "minimum": 0},
        "stage": {"enum": ["open", "won", "lost"]},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "owner": {"$ref": "#/$defs/Owner"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "required": ["deal_id", "amount"],
    "additionalProperties": False,
    "$defs": {"Owner": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}},
}


def fields(errors):
    return sorted((e["field"], e["type"]) for e in errors)


def test_valid_arguments_pass():
    args = {"deal_id": "D-1", "amount": 10, "stage": "won", "tags": ["a"], "owner": {"id": 3}, "note": None}
    assert validate(args, SCHEMA) == []


def test_each_kind_of_violation_is_reported_with_its_field():
    args = {
        "deal_id": "D",
        "amount": -1,
        "stage": "maybe",
        "tags": ["a", 2, "c"],
        "owner": {"id": "x"},
        "note": 5,
        "extra": 1,
    }
    assert fields(validate(args, SCHEMA)) == [
        ("amount", "minimum"),
        ("deal_id", "too_short"),
        ("extra", "extra_forbidden"),
        ("note", "anyOf"),
        ("owner.id", "type_error"),
        ("stage", "enum"),
        ("tags", "too_long"),
        ("tags[1]", "type_error"),
    ]


def test_missing_required_and_booleans_are_not_numbers():
    assert fields(validate({"amount": True}, SCHEMA)) == [("amount", "type_error"), ("deal_id", "missing")]


def test_integer_accepts_whole_floats_only():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    assert validate({"n": 2.0}, schema) == []
    assert fields(validate({"n": 2.5}, schema)) == [("n", "type_error")]
