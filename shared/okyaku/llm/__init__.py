"""The LLM layer: a hardened gateway to Ollama's OpenAI-compatible API and a local embedder.

Importing this package is cheap: ``openai``, numpy and onnxruntime load on first use."""

from okyaku.llm.breaker import CircuitBreaker, CircuitState
from okyaku.llm.budget import llm_deadline
from okyaku.llm.config import FeatureFlags, LLMConfig
from okyaku.llm.errors import (
    LLMContextExceeded,
    LLMOutputInvalid,
    LLMOutputTruncated,
    LLMRequestRejected,
    LLMTimeout,
    LLMToolCallInvalid,
    LLMUnavailable,
    LLMUnsupported,
)
from okyaku.llm.gateway import LLMGateway, LLMStream, SyncLLM
from okyaku.llm.local_embedder import LOCAL_MODEL_NAME, LocalEmbedder, get_local_embedder, is_local_model
from okyaku.llm.prompts import PromptTemplate
from okyaku.llm.types import (
    ChatResult,
    EmbeddingResult,
    Message,
    StructuredResult,
    Tool,
    ToolCall,
    ToolCallResult,
    Usage,
    assistant,
    system,
    user,
)

__all__ = [
    "LOCAL_MODEL_NAME",
    "ChatResult",
    "CircuitBreaker",
    "CircuitState",
    "EmbeddingResult",
    "FeatureFlags",
    "LLMConfig",
    "LLMContextExceeded",
    "LLMGateway",
    "LLMOutputInvalid",
    "LLMOutputTruncated",
    "LLMRequestRejected",
    "LLMStream",
    "LLMTimeout",
    "LLMToolCallInvalid",
    "LLMUnavailable",
    "LLMUnsupported",
    "LocalEmbedder",
    "Message",
    "PromptTemplate",
    "StructuredResult",
    "SyncLLM",
    "Tool",
    "ToolCall",
    "ToolCallResult",
    "Usage",
    "assistant",
    "get_local_embedder",
    "is_local_model",
    "llm_deadline",
    "system",
    "user",
]
