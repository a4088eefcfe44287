"""A conservative token count without a tokenizer (none is downloaded at run time).

BPE tokenizers of the models we serve spend about four characters of English per token; we count
three, every digit and every non-ASCII character as a token of its own (numbers and CJK split
finely), and a few tokens per message for the chat template's markers. Over-counting costs a
little context; under-counting would let the server cut a prompt silently."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from okyaku.llm.types import Message

CHARS_PER_TOKEN = 3
MESSAGE_OVERHEAD = 8  # role markers and separators of a chat template
PROMPT_OVERHEAD = 16  # the template's start, the assistant's header


def estimate_tokens(text: str) -> int:
    digits = sum(ch.isdigit() for ch in text)
    wide = sum(not ch.isascii() for ch in text)
    rest = len(text) - digits - wide
    return digits + wide + math.ceil(rest / CHARS_PER_TOKEN)


def chars_for_tokens(tokens: int) -> int:
    """How many characters of plain prose ``estimate_tokens`` counts as at most ``tokens``."""
    return max(0, tokens) * CHARS_PER_TOKEN


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return json.dumps(content)  # multi-part content, tool-call arguments


def estimate_messages(messages: Sequence[Message], tools: Iterable[dict[str, Any]] = ()) -> int:
    """The prompt's tokens: every message (with its tool calls) and the tool definitions, which
    chat templates render into the prompt."""
    total = PROMPT_OVERHEAD
    for message in messages:
        total += MESSAGE_OVERHEAD + estimate_tokens(_content_text(message.get("content")))
        if message.get("tool_calls"):
            total += estimate_tokens(json.dumps(message["tool_calls"]))
    tool_list = list(tools)
    if tool_list:
        total += estimate_tokens(json.dumps(tool_list))
    return total
