"""Configuration from environment variables (names kept from the original seed)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every variable is documented in the README with its default."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # Database: the app connects as a role that owns nothing (RLS applies to it);
    # migrations connect as the owner.
    database_url: str = Field(default="", description="SQLAlchemy URL of the application role")
    database_migration_url: str = Field(default="", description="URL of the owner role; defaults to DATABASE_URL")
    database_app_role: str = "okyaku_app"
    database_pool_size: int = 5
    database_statement_timeout_ms: int = 30_000

    # Change events: to an EventBridge bus (one rule and queue per consumer) when a bus is
    # named, else straight to one SQS queue.
    change_events_bus_name: str = ""
    change_events_queue_url: str = ""
    aws_endpoint_url: str = ""
    aws_region: str = Field(default="us-east-1", validation_alias="AWS_REGION")

    # LLM (Ollama through its OpenAI-compatible API)
    ollama_base_url: str = "http://localhost:11434/v1"
    ollama_model: str = "llama3.1"
    ollama_embedding_model: str = "nomic-embed-text"
    ai_max_tokens: int = 1024
    ai_temperature: float = 0.3
    ai_agents_enabled: bool = True
    ai_predictions_enabled: bool = True
    ai_chat_enabled: bool = True
    ai_rag_enabled: bool = True
    ai_require_approval_for_writes: bool = True
    ai_content_enabled: bool = True
    ai_conversation_enabled: bool = True
    ai_recommendations_enabled: bool = True
    ai_anomalies_enabled: bool = True
    # LLM gateway hardening (okyaku.llm); OLLAMA_EMBEDDING_MODEL=local:all-minilm-l6-v2 uses the
    # in-process embedder, which is also the fallback while Ollama is unreachable.
    ollama_api_key: str = "ollama"
    llm_timeout_s: float = 120.0
    llm_connect_timeout_s: float = 3.0
    llm_health_timeout_s: float = 3.0
    llm_max_retries: int = 2
    llm_backoff_base_s: float = 0.5
    llm_backoff_max_s: float = 8.0
    llm_max_concurrency: int = 4
    llm_breaker_failure_threshold: int = 3
    llm_breaker_reset_s: float = 30.0
    llm_embedding_batch_size: int = 32
    llm_embedding_fallback_local: bool = True

    # AI agents (okyaku.agents): runs go to AGENT_RUNS_QUEUE_URL when set, else a local thread.
    agent_runs_queue_url: str = ""
    ai_agent_max_iterations: int = 10
    ai_agent_token_budget: int = 60_000
    ai_agent_time_budget_s: float = 300.0
    ai_agent_max_proposals: int = 10
    ai_approval_ttl_hours: float = 72.0

    # Chat over the CRM (okyaku.chat): every plan runs read-only, capped and timed out.
    ai_chat_row_limit: int = 200
    ai_chat_statement_timeout_ms: int = 5000
    ai_chat_timezone: str = "UTC"
    ai_chat_history_turns: int = 6

    # HTTP
    api_max_page_size: int = 200
    import_max_bytes: int = 50 * 1024 * 1024

    # Web console (okyaku.console): sessions are signed with CONSOLE_SESSION_SECRET; unset, a random
    # secret per process (right for the local runner, where every function shares one process).
    console_session_secret: str = ""
    console_session_ttl_hours: float = 12.0
    console_secure_cookie: str = "auto"  # auto: Secure when served over https; true | false

    # Logging
    log_level: str = "INFO"
    log_format: str = "auto"  # json | text | auto (JSON inside Lambda/OpenFaaS)

    @property
    def migration_url(self) -> str:
        return self.database_migration_url or self.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
