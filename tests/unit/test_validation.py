"""Pydantic errors become the same field details everywhere (API, tools, approvals, LLM answers)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator, model_validator

from okyaku.validation import field_details


class Item(BaseModel):
    name: str
    quantity: int

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class Order(BaseModel):
    items: list[Item]

    @model_validator(mode="after")
    def _not_empty(self) -> Order:
        if not self.items:
            raise ValueError("an order needs an item")
        return self


def errors_of(model: type[BaseModel], data: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return caught.value


def test_nested_locations_are_dotted_and_value_errors_read_plainly():
    error = errors_of(Order, {"items": [{"name": " ", "quantity": "many"}]})
    assert field_details(error) == [
        {"field": "items.0.name", "message": "must not be blank", "type": "value_error"},
        {"field": "items.0.quantity", "message": error.errors()[1]["msg"], "type": "int_parsing"},
    ]


def test_a_prefix_names_what_was_validated_and_whole_names_a_model_level_error():
    error = errors_of(Order, {"items": []})
    assert field_details(error, prefix="context") == [
        {"field": "context", "message": "an order needs an item", "type": "value_error"}
    ]
    assert [d["field"] for d in field_details(error, whole="(answer)")] == ["(answer)"]
    missing = errors_of(Item, {"name": "x"})
    assert [d["field"] for d in field_details(missing, prefix="edited_fields")] == ["edited_fields.quantity"]


def test_request_sources_are_dropped_only_where_a_field_follows():
    raw = [
        {"loc": ("body", "email"), "msg": "Field required", "type": "missing"},
        {"loc": ("query", "limit"), "msg": "too big", "type": "less_than_equal"},
        {"loc": ("body",), "msg": "Field required", "type": "missing"},
        {"loc": ("body", "body"), "msg": "Input should be a valid string", "type": "string_type"},
    ]
    sources = ("body", "query", "path", "header")
    assert [d["field"] for d in field_details(raw, drop_sources=sources)] == ["email", "limit", "body", "body"]
