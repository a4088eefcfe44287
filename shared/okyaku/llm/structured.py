"""Structured answers and tool calls: the instruction that asks for JSON matching a schema, the
checks of what came back (a pydantic model, or a tool's schema), and the repair turn that tells
the model what was wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from okyaku.llm.schema_check import validate as validate_against_schema
from okyaku.llm.types import Message, T, Tool, ToolCall, user
from okyaku.validation import field_details


def structured_output_note(schema: type[BaseModel]) -> str:
    return (
        "Answer with one JSON object and nothing else (no prose, no code fences). "
        "It must validate against this JSON schema:\n" + json.dumps(schema.model_json_schema())
    )


def json_schema_note() -> str:
    """With constrained decoding the server holds the answer to the schema; the model still needs
    to be told to answer in JSON (weak models write better JSON when asked for it)."""
    return "Answer with one JSON object and nothing else, filling in the fields asked for."


# Keywords left out of the schema a server decodes against: long length and item bounds turn into
# huge grammars (a 3,000-character bound is 3,000 nested rules in llama.cpp), and patterns into
# regexes a grammar may not support. The pydantic model still checks them; a violation gets the
# repair round.
_UNCONSTRAINED = frozenset({"maxLength", "maxItems", "pattern", "title", "examples"})


def constrained_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema as sent in ``response_format``, without what grammars handle badly."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: strip(v) if k != "properties" else {name: strip(p) for name, p in v.items()}
                for k, v in node.items()
                if k not in _UNCONSTRAINED
            }
        if isinstance(node, list):
            return [strip(item) for item in node]
        return node

    result: dict[str, Any] = strip(schema.model_json_schema())
    return result


def repair_request(errors: list[dict[str, str]]) -> str:
    return (
        "That answer is not valid: "
        + "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        + ". Reply again with only the corrected JSON object."
    )


def strip_fences(text: str) -> str:
    match = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    return (match.group(1) if match else text).strip()


def with_system_note(messages: Sequence[Message], note: str) -> list[Message]:
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0].get('content') or ''}\n\n{note}".strip()
    else:
        out.insert(0, {"role": "system", "content": note})
    return out


def parse_structured(content: str, schema: type[T]) -> tuple[T | None, list[dict[str, str]]]:
    try:
        data = json.loads(strip_fences(content))
    except ValueError as error:
        return None, [{"field": "(answer)", "message": f"not valid JSON: {error}", "type": "json_invalid"}]
    try:
        return schema.model_validate(data), []
    except ValidationError as error:
        return None, field_details(error, whole="(answer)")


def validate_tool_calls(
    raw_calls: Sequence[Any], tools: dict[str, Tool]
) -> tuple[list[ToolCall], list[dict[str, str]]]:
    calls: list[ToolCall] = []
    errors: list[dict[str, str]] = []
    for raw in raw_calls:
        name = raw.function.name
        tool = tools.get(name)
        if tool is None:
            errors.append({"field": name, "message": f"unknown tool; known: {sorted(tools)}", "type": "unknown_tool"})
            continue
        try:
            arguments = json.loads(raw.function.arguments or "{}")
        except ValueError as error:
            errors.append({"field": name, "message": f"arguments are not valid JSON: {error}", "type": "json_invalid"})
            continue
        if not isinstance(arguments, dict):
            errors.append({"field": name, "message": "arguments must be a JSON object", "type": "type_error"})
            continue
        parsed: BaseModel | None = None
        if isinstance(tool.parameters, dict):
            problems = validate_against_schema(arguments, tool.parameters)
        else:
            try:
                parsed = tool.parameters.model_validate(arguments)
                problems = []
            except ValidationError as error:
                problems = field_details(error, whole="(arguments)")
        for problem in problems:
            errors.append({**problem, "field": f"{name}.{problem['field']}"})
        if not problems:
            calls.append(ToolCall(id=raw.id, name=name, arguments=arguments, parsed=parsed))
    return calls, errors


def tool_repair_messages(message: Any, raw_calls: Sequence[Any], errors: list[dict[str, str]]) -> list[Message]:
    """The invalid turn as the model made it, each call answered with what was wrong."""
    turn: Message = {
        "role": "assistant",
        "content": message.content,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in raw_calls
        ],
    }
    out: list[Message] = [turn]
    for call in raw_calls:
        mine = [
            e for e in errors if e["field"] == call.function.name or e["field"].startswith(call.function.name + ".")
        ]
        text = "; ".join(f"{e['field']}: {e['message']}" for e in mine) if mine else "not run: fix the other calls"
        out.append({"role": "tool", "tool_call_id": call.id, "content": f"error: {text}"})
    if not raw_calls:
        out.append(user("Call one of the tools, with arguments matching its schema."))
    return out
