"""One text in, one verified analysis out: chunk, ask the LLM per chunk, drop unquoted items, merge.

Chunks are sized to the model's context window: the prompt around the text, the text and the room
kept for the answer must fit, or the server would cut the prompt silently. A chunk the gateway
still finds too big (``llm_context_exceeded``) or whose answer was cut off at ``max_tokens``
(``llm_output_truncated``: a smaller text has fewer items to report) is split in two and each half
analysed; a piece that cannot be split further raises.

No database here. LLM failures are raised as the gateway raises them (``LLMUnavailable``,
``LLMOutputInvalid``, ...); callers decide whether that is a retry (queue) or a degraded answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from okyaku.conversation.chunking import Chunk, chunk_text, merge_analyses
from okyaku.conversation.prompts import ANALYZE
from okyaku.conversation.quotes import QuoteFinder
from okyaku.conversation.schema import ConversationAnalysis, DroppedItem
from okyaku.conversation.verification import verify_quotes
from okyaku.llm.errors import LLMContextExceeded, LLMOutputTruncated
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.tokens import chars_for_tokens
from okyaku.llm.types import Message, Usage

logger = logging.getLogger(__name__)

# Below this a chunk is not split further (its answer or prompt still does not fit: a setup problem).
MIN_CHUNK_CHARS = 400
# Tokens kept spare beside the estimate (a part note, the subject, template differences).
_SPARE_TOKENS = 64


@dataclass(frozen=True)
class TextToAnalyse:
    text: str
    activity_type: str
    direction: str | None
    day: date
    subject: str | None = None
    stage_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnalysisResult:
    analysis: ConversationAnalysis
    dropped: list[DroppedItem]
    model: str
    usage: Usage
    chunks: int
    prompt: str = ANALYZE.id


class ConversationAnalyzer:
    def __init__(self, llm: LLMGateway, *, chunk_chars: int = 6000, max_tokens: int = 2048) -> None:
        self.llm = llm
        self.chunk_chars = chunk_chars
        self.max_tokens = max_tokens

    def _messages(self, item: TextToAnalyse, text: str, part_note: str) -> list[Message]:
        stage_hint = "The deal's pipeline stages are: " + ", ".join(item.stage_names) + "." if item.stage_names else ""
        return ANALYZE.render(
            activity_type=item.activity_type,
            direction=item.direction or "no direction",
            activity_date=item.day.isoformat() + f" ({item.day.strftime('%A')})",
            subject=item.subject or "(none)",
            part_note=part_note,
            text=text,
            stage_hint=stage_hint,
        )

    def sizes(self, item: TextToAnalyse) -> tuple[int, int]:
        """The chunk size (characters) and answer budget (tokens) that fit the model's context."""
        info = self.llm.sync.server_info()
        if info is None or info.context_window is None:
            return self.chunk_chars, self.max_tokens
        context = info.context_window
        max_tokens = min(self.max_tokens, context // 2)  # a small context shares itself with the text
        around = self.llm.sync.structured_prompt_tokens(
            self._messages(item, "", "(Part 10 of 10 of a longer text.)"), ConversationAnalysis
        )
        room = context - max_tokens - around - _SPARE_TOKENS
        return max(MIN_CHUNK_CHARS, min(self.chunk_chars, chars_for_tokens(room))), max_tokens

    def analyse(self, item: TextToAnalyse, *, deadline: float | None = None) -> AnalysisResult:
        """``deadline`` (a ``time.monotonic()`` value): no model call runs past it."""
        finder = QuoteFinder(item.text)
        chunk_chars, max_tokens = self.sizes(item)
        pending = chunk_text(item.text, chunk_chars)
        done: list[tuple[Chunk, ConversationAnalysis]] = []
        dropped: list[DroppedItem] = []
        usage = Usage()
        model = ""
        while pending:
            chunk = pending.pop(0)
            total = len(done) + 1 + len(pending)
            part_note = f"(Part {len(done) + 1} of {total} of a longer text.)" if total > 1 else ""
            try:
                result = self.llm.sync.chat_structured(
                    self._messages(item, chunk.text, part_note),
                    ConversationAnalysis,
                    max_tokens=max_tokens,
                    operation="conversation.analyze",
                    deadline=deadline,
                )
            except (LLMContextExceeded, LLMOutputTruncated) as error:
                if len(chunk.text) < 2 * MIN_CHUNK_CHARS:
                    raise
                logger.info("conversation chunk of %d chars split in two: %s", len(chunk.text), error.code)
                halves = chunk_text(chunk.text, (len(chunk.text) + 1) // 2 + 1)
                pending[:0] = [Chunk(0, chunk.start + h.start, h.text) for h in halves]
                continue
            verified, lost = verify_quotes(result.value, finder, offset=chunk.start)
            done.append((chunk, verified))
            dropped.extend(lost)
            usage += result.usage
            model = result.model
        parts = [(Chunk(i, c.start, c.text), a) for i, (c, a) in enumerate(done)]
        return AnalysisResult(merge_analyses(parts), dropped, model, usage, len(parts))
