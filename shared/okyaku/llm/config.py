"""Gateway configuration and AI feature switches, read from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from okyaku.config import Settings, get_settings
from okyaku.features import FeatureFlags

__all__ = ["FeatureFlags", "LLMConfig"]


@dataclass(frozen=True)
class LLMConfig:
    base_url: str = "http://localhost:11434/v1"
    api_key: str = "ollama"
    chat_model: str = "llama3.1"
    embedding_model: str = "nomic-embed-text"
    max_tokens: int = 1024
    temperature: float = 0.3
    timeout_s: float = 120.0
    connect_timeout_s: float = 3.0
    health_timeout_s: float = 3.0
    max_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_concurrency: int = 4
    breaker_failure_threshold: int = 3
    breaker_reset_s: float = 30.0
    embedding_batch_size: int = 32
    embedding_fallback_local: bool = True

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LLMConfig:
        s = settings or get_settings()
        return cls(
            base_url=s.ollama_base_url,
            api_key=s.ollama_api_key,
            chat_model=s.ollama_model,
            embedding_model=s.ollama_embedding_model,
            max_tokens=s.ai_max_tokens,
            temperature=s.ai_temperature,
            timeout_s=s.llm_timeout_s,
            connect_timeout_s=s.llm_connect_timeout_s,
            health_timeout_s=s.llm_health_timeout_s,
            max_retries=s.llm_max_retries,
            backoff_base_s=s.llm_backoff_base_s,
            backoff_max_s=s.llm_backoff_max_s,
            max_concurrency=s.llm_max_concurrency,
            breaker_failure_threshold=s.llm_breaker_failure_threshold,
            breaker_reset_s=s.llm_breaker_reset_s,
            embedding_batch_size=s.llm_embedding_batch_size,
            embedding_fallback_local=s.llm_embedding_fallback_local,
        )
