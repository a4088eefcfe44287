"""A small JSON-schema validator for tool arguments (the subset tool schemas use: types, required,
properties, additionalProperties, enum/const, items, lengths, bounds, pattern, anyOf/oneOf, local
``$ref``). Errors come back in the project's ``{"field", "message", "type"}`` shape."""

from __future__ import annotations

import re
from typing import Any

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _is_type(value: Any, type_name: str) -> bool:
    if type_name in ("integer", "number") and isinstance(value, bool):
        return False
    if type_name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(type_name, (object,)))


def validate(instance: Any, schema: dict[str, Any]) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    _check(instance, schema, "", schema, errors)
    return errors


def _error(errors: list[dict[str, str]], path: str, message: str, type_: str) -> None:
    errors.append({"field": path or "(arguments)", "message": message, "type": type_})


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part, {}) if isinstance(target, dict) else {}
    return target if isinstance(target, dict) else {}


def _check(value: Any, schema: dict[str, Any], path: str, root: dict[str, Any], errors: list[dict[str, str]]) -> None:
    schema = _resolve(schema, root)
    for keyword in ("anyOf", "oneOf"):
        if keyword in schema:
            matches = [s for s in schema[keyword] if not validate_against(value, s, root)]
            if not matches or (keyword == "oneOf" and len(matches) > 1):
                _error(errors, path, f"does not match {keyword} alternatives", keyword)
                return
    expected = schema.get("type")
    if expected is not None:
        names = expected if isinstance(expected, list) else [expected]
        if not any(_is_type(value, name) for name in names):
            _error(errors, path, f"expected {' or '.join(names)}, got {type(value).__name__}", "type_error")
            return
    if "enum" in schema and value not in schema["enum"]:
        _error(errors, path, f"must be one of {schema['enum']}", "enum")
    if "const" in schema and value != schema["const"]:
        _error(errors, path, f"must be {schema['const']!r}", "const")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            _error(errors, path, f"shorter than {schema['minLength']} characters", "too_short")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            _error(errors, path, f"longer than {schema['maxLength']} characters", "too_long")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            _error(errors, path, f"does not match {schema['pattern']}", "pattern")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            _error(errors, path, f"less than {schema['minimum']}", "minimum")
        if "maximum" in schema and value > schema["maximum"]:
            _error(errors, path, f"greater than {schema['maximum']}", "maximum")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            _error(errors, path, f"not greater than {schema['exclusiveMinimum']}", "minimum")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            _error(errors, path, f"not less than {schema['exclusiveMaximum']}", "maximum")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            _error(errors, path, f"fewer than {schema['minItems']} items", "too_short")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            _error(errors, path, f"more than {schema['maxItems']} items", "too_long")
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                _check(item, schema["items"], f"{path}[{i}]", root, errors)
    if isinstance(value, dict):
        properties: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                _error(errors, _join(path, name), "is required", "missing")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                _check(item, properties[name], _join(path, name), root, errors)
            elif extra is False:
                _error(errors, _join(path, name), "is not an allowed property", "extra_forbidden")
            elif isinstance(extra, dict):
                _check(item, extra, _join(path, name), root, errors)


def validate_against(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    _check(value, schema, "", root, errors)
    return errors


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
