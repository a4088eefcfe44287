"""Prompt templates: versioned, rendered with ``string.Template`` (``$name``), so JSON braces in
the text need no escaping. Each template names the pydantic model its answer must match."""

from __future__ import annotations

from dataclasses import dataclass
from string import Template
from typing import Any, Generic

from okyaku.llm.types import Message, T, system, user


@dataclass(frozen=True)
class PromptTemplate(Generic[T]):
    name: str
    version: str
    system: str
    user: str
    output: type[T]

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, **values: Any) -> list[Message]:
        """Both messages; a missing variable raises ``KeyError`` (a bug, not user input)."""
        text = {k: "" if v is None else str(v) for k, v in values.items()}
        return [
            system(Template(self.system).substitute(text).strip()),
            user(Template(self.user).substitute(text).strip()),
        ]
