"""One text in, one verified analysis out: chunk, ask the LLM per chunk, drop unquoted items, merge.

No database here. LLM failures are raised as the gateway raises them (``LLMUnavailable``,
``LLMOutputInvalid``, ...); callers decide whether that is a retry (queue) or a degraded answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from okyaku.conversation.chunking import chunk_text, merge_analyses
from okyaku.conversation.prompts import ANALYZE
from okyaku.conversation.quotes import QuoteFinder
from okyaku.conversation.schema import ConversationAnalysis, DroppedItem
from okyaku.conversation.verification import verify_quotes
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.types import Usage


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

    def analyse(self, item: TextToAnalyse) -> AnalysisResult:
        finder = QuoteFinder(item.text)
        chunks = chunk_text(item.text, self.chunk_chars)
        parts = []
        dropped: list[DroppedItem] = []
        usage = Usage()
        model = ""
        stage_hint = "The deal's pipeline stages are: " + ", ".join(item.stage_names) + "." if item.stage_names else ""
        for chunk in chunks:
            part_note = f"(Part {chunk.index + 1} of {len(chunks)} of a longer text.)" if len(chunks) > 1 else ""
            messages = ANALYZE.render(
                activity_type=item.activity_type,
                direction=item.direction or "no direction",
                activity_date=item.day.isoformat() + f" ({item.day.strftime('%A')})",
                subject=item.subject or "(none)",
                part_note=part_note,
                text=chunk.text,
                stage_hint=stage_hint,
            )
            result = self.llm.sync.chat_structured(
                messages, ConversationAnalysis, max_tokens=self.max_tokens, operation="conversation.analyze"
            )
            verified, lost = verify_quotes(result.value, finder, offset=chunk.start)
            parts.append((chunk, verified))
            dropped.extend(lost)
            usage += result.usage
            model = result.model
        return AnalysisResult(merge_analyses(parts), dropped, model, usage, len(chunks))
