"""Gateway configuration and AI feature switches, read from Settings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from okyaku.config import Settings, get_settings
from okyaku.features import FeatureFlags

__all__ = ["FeatureFlags", "LLMConfig"]

# Settings as they are without any environment: where LLMConfig's defaults come from.
_SETTINGS_DEFAULTS = Settings.model_construct()


def _from_setting(name: str) -> Any:
    """A config field read from the setting ``name``, whose default is that setting's."""
    return field(default=getattr(_SETTINGS_DEFAULTS, name), metadata={"setting": name})


@dataclass(frozen=True)
class LLMConfig:
    """The gateway's settings (OLLAMA_*, AI_MAX_TOKENS, AI_TEMPERATURE, LLM_*), one field each."""

    base_url: str = _from_setting("ollama_base_url")
    api_key: str = _from_setting("ollama_api_key")
    chat_model: str = _from_setting("ollama_model")
    embedding_model: str = _from_setting("ollama_embedding_model")
    max_tokens: int = _from_setting("ai_max_tokens")
    temperature: float = _from_setting("ai_temperature")
    timeout_s: float = _from_setting("llm_timeout_s")
    connect_timeout_s: float = _from_setting("llm_connect_timeout_s")
    health_timeout_s: float = _from_setting("llm_health_timeout_s")
    max_retries: int = _from_setting("llm_max_retries")
    backoff_base_s: float = _from_setting("llm_backoff_base_s")
    backoff_max_s: float = _from_setting("llm_backoff_max_s")
    max_concurrency: int = _from_setting("llm_max_concurrency")
    breaker_failure_threshold: int = _from_setting("llm_breaker_failure_threshold")
    breaker_reset_s: float = _from_setting("llm_breaker_reset_s")
    embedding_batch_size: int = _from_setting("llm_embedding_batch_size")
    embedding_fallback_local: bool = _from_setting("llm_embedding_fallback_local")
    num_ctx: int = _from_setting("ollama_num_ctx")
    structured_output: str = _from_setting("llm_structured_output")

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LLMConfig:
        s = settings or get_settings()
        return cls(**{f.name: getattr(s, f.metadata["setting"]) for f in fields(cls)})
