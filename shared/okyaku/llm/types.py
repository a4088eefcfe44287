"""What the gateway returns. Every result says which model answered, the tokens it used, and
whether it ran degraded (a fallback stood in for the configured model)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

Message = dict[str, Any]
T = TypeVar("T", bound=BaseModel)


def system(content: str) -> Message:
    return {"role": "system", "content": content}


def user(content: str) -> Message:
    return {"role": "user", "content": content}


def assistant(content: str) -> Message:
    return {"role": "assistant", "content": content}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class ChatResult:
    content: str
    model: str
    usage: Usage
    finish_reason: str | None = None
    degraded: bool = False


@dataclass(frozen=True)
class StructuredResult(Generic[T]):
    value: T
    model: str
    usage: Usage
    repaired: bool = False  # the first answer was invalid and a repair prompt fixed it
    degraded: bool = False


@dataclass(frozen=True)
class Tool:
    """A function the LLM may call. ``parameters`` is a JSON schema (an object schema), or a
    pydantic model whose schema is sent and which validates the arguments."""

    name: str
    description: str
    parameters: dict[str, Any] | type[BaseModel]
    writes: bool = False  # tools that change data go through the approval queue

    def json_schema(self) -> dict[str, Any]:
        if isinstance(self.parameters, dict):
            return self.parameters
        return self.parameters.model_json_schema()

    def openai_format(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.json_schema()},
        }


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    parsed: BaseModel | None = None  # set when the tool's parameters are a pydantic model

    def openai_format(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments)},
        }


@dataclass(frozen=True)
class ToolCallResult:
    content: str | None
    tool_calls: list[ToolCall]
    model: str
    usage: Usage
    repaired: bool = False
    degraded: bool = False


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]
    model: str  # stored with each vector: vectors of different models never mix
    dimension: int
    provider: str  # "ollama" or "local"
    usage: Usage = field(default_factory=Usage)
    degraded: bool = False  # the local model stood in for the configured one
