"""Configuration from environment variables (names kept from the original seed)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

# A hosted function's own environment (its template's Globals + Environment), as sorted pairs.
FunctionEnvironment = tuple[tuple[str, str], ...]

# Set by a host that runs several functions in one process (the local runner), around a function's
# import and each of its invocations: Settings read there see that function's variables, as its own
# Lambda would, and never another function's.
_function_environment: ContextVar[FunctionEnvironment | None] = ContextVar("okyaku_function_environment", default=None)


@contextmanager
def function_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Inside the block (this thread, and the tasks and ``to_thread`` calls started from it),
    ``Settings()`` and ``get_settings()`` read ``variables`` as the process environment's next
    layer: a variable set in the process still wins (``okyaku dev``'s DATABASE_URL, a user's
    OLLAMA_BASE_URL)."""
    token = _function_environment.set(tuple(sorted(variables.items())))
    try:
        yield
    finally:
        _function_environment.reset(token)


class _FunctionEnvironmentSource(EnvSettingsSource):
    """Environment variables from the hosted function's own environment instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], variables: FunctionEnvironment) -> None:
        self._variables = variables
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name if self.case_sensitive else name.lower(): value for name, value in self._variables}


class Settings(BaseSettings):
    """Every variable is documented in the README with its default."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        hosted = _function_environment.get()
        if not hosted:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        # The process's environment first: what it sets wins over the function's template values.
        function_settings = _FunctionEnvironmentSource(settings_cls, hosted)
        return init_settings, env_settings, function_settings, dotenv_settings, file_secret_settings

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
    llm_health_cache_s: float = 15.0
    llm_max_retries: int = 2
    llm_backoff_base_s: float = 0.5
    llm_backoff_max_s: float = 8.0
    llm_max_concurrency: int = 4
    llm_breaker_failure_threshold: int = 3
    llm_breaker_reset_s: float = 30.0
    llm_embedding_batch_size: int = 32
    llm_embedding_fallback_local: bool = True
    # The model server's context window in tokens per request; 0: learn it from the server
    # (llama.cpp /props, Ollama /api/show's num_ctx, else Ollama's default). Set it when Ollama runs
    # with OLLAMA_CONTEXT_LENGTH, which its API does not report. Prompts that would not fit are
    # not sent (llm_context_exceeded).
    ollama_num_ctx: int = Field(default=0, ge=0)
    # Structured answers: auto (a JSON schema as response_format where the server supports it,
    # else JSON mode with the schema in the prompt) | json_schema | json_object.
    llm_structured_output: str = Field(default="auto", pattern="^(auto|json_schema|json_object)$")

    # AI agents (okyaku.agents): runs go to AGENT_RUNS_QUEUE_URL when set, else a local thread.
    agent_runs_queue_url: str = ""
    ai_agent_max_iterations: int = 10
    ai_agent_token_budget: int = 60_000
    ai_agent_time_budget_s: float = 300.0
    ai_agent_max_proposals: int = 10
    ai_approval_ttl_hours: float = 72.0
    # Fairness: runs queued or running at once per organization (429 beyond), and how long a run
    # may wait in the queue before it is failed (a lost message, a worker that never came).
    ai_agent_max_active_runs: int = Field(default=5, ge=1)
    ai_agent_queued_timeout_s: float = Field(default=900.0, gt=0)

    # Conversation intelligence (okyaku.conversation): texts longer than CONVERSATION_CHUNK_CHARS
    # are analysed in chunks and merged; the sweep looks at this many unanalysed activities a page.
    conversation_chunk_chars: int = Field(default=6000, ge=500)
    conversation_max_tokens: int = Field(default=2048, ge=256)
    conversation_sweep_batch: int = Field(default=50, ge=1, le=1000)
    # Chat over the CRM (okyaku.chat): every plan runs read-only, capped and timed out.
    ai_chat_row_limit: int = 200
    ai_chat_statement_timeout_ms: int = 5000
    ai_chat_timezone: str = "UTC"
    ai_chat_history_turns: int = 6
    # Seconds a chat turn may spend on model calls when the invocation's end is unknown (locally);
    # on Lambda the invocation's remaining time, less a margin, bounds it too.
    ai_chat_turn_budget_s: float = 25.0
    # Recommendations (okyaku.recommendations): the rule thresholds teams most often differ on;
    # the other constants are in okyaku/recommendations/settings.py.
    ai_recommendations_deal_stale_days: int = 14
    ai_recommendations_lead_stale_days: int = 7
    ai_recommendations_hot_lead_score: float = 70.0
    ai_recommendations_quiet_days: int = 60
    ai_recommendations_dismiss_days: int = 30

    # Anomalies, insights and notifications (okyaku.anomalies): the schedules put one message per
    # organization on ANOMALY_SCAN_QUEUE_URL (unset: each organization is scanned in-process).
    anomaly_scan_queue_url: str = ""
    anomaly_series_threshold: float = 3.5
    anomaly_series_days: int = 2
    anomaly_churn_threshold: float = 50.0
    anomaly_dismiss_snooze_days: float = 30.0
    notifications_email_from: str = ""

    # Outgoing e-mail (okyaku.email): SMTP when SMTP_HOST is set, else SES (boto3, AWS_ENDPOINT_URL).
    # ``okyaku dev`` without SMTP_HOST points these at its local catcher: nothing reaches real people.
    email_transport: str = Field(default="auto", pattern="^(auto|smtp|ses)$")
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = True
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    # The e-mail function's own queue: one message per queued e-mail (unset: a local thread sends it).
    email_queue_url: str = ""
    # E-mails an organization may queue in any rolling hour (429 beyond).
    email_hourly_limit: int = Field(default=200, ge=1)
    # Attempts before a transient failure (server down, 4xx) becomes ``failed``; backoff doubles
    # from EMAIL_RETRY_BASE_S up to an hour.
    email_max_attempts: int = Field(default=8, ge=1)
    email_retry_base_s: float = Field(default=30.0, gt=0)
    # How long a claimed e-mail stays ``sending`` before another worker may try it again (a worker
    # that died mid-send); well above SMTP_TIMEOUT_S so a live send is never taken over.
    email_send_lease_s: float = Field(default=300.0, gt=0)
    # Mailbox sync (okyaku.mailboxes): IMAP passwords are encrypted with MAILBOX_ENCRYPTION_KEY (a
    # Fernet key; unset: mailboxes cannot be connected, 503). The schedule puts one message per
    # mailbox on MAILBOX_SYNC_QUEUE_URL (unset: each mailbox is synced in-process).
    mailbox_encryption_key: SecretStr = SecretStr("")
    mailbox_sync_queue_url: str = ""
    mailbox_sync_max_messages: int = Field(default=200, ge=1, le=5000)  # per folder and run
    mailbox_initial_days: int = Field(default=30, ge=1, le=3650)  # how far back a new mailbox looks
    mailbox_body_max_chars: int = Field(default=20_000, ge=500, le=100_000)
    mailbox_message_max_bytes: int = Field(default=10_000_000, ge=10_000)  # bigger: headers only
    mailbox_imap_timeout_s: float = Field(default=20.0, gt=0, le=120)

    # The nightly retrain + rescore of the scoring and forecasting functions: one message per
    # organization onto the function's own jobs queue (unset: every organization in-process).
    prediction_jobs_queue_url: str = ""
    # The hourly embeddings backfill, the same way: one message per organization (unset: in-process).
    embedding_jobs_queue_url: str = ""

    # Trained model artefacts are HMAC-signed with this key and never loaded unsigned (unset: a key
    # derived from DATABASE_URL, fine for the embedded default; set it in production).
    model_signing_key: str = ""

    # HTTP
    api_max_page_size: int = 200
    # Lambda takes at most 6 MB of request event; API Gateway sends a multipart upload base64-encoded
    # (4/3 larger), so what fits through the gateway is a file of about 4 MB.
    import_max_bytes: int = 4_000_000
    # Bigger files go to S3 first (POST /api/v1/imports/uploads: a presigned POST whose policy caps
    # the size), then run as an import job: on IMPORT_JOBS_QUEUE_URL when set, else a local thread.
    imports_bucket: str = ""
    s3_endpoint_url: str = ""  # LocalStack, MinIO; unset: AWS_ENDPOINT_URL, else AWS's
    import_upload_max_bytes: int = 50_000_000  # the import_jobs function's 3 GB: ~32x the file (measured)
    import_upload_url_expiry_s: int = 3600
    import_jobs_queue_url: str = ""

    # OpenFaaS triggers (okyaku.openfaas): a request with X-Topic runs a schedule or a queue
    # message only when signed (HMAC-SHA256) with this secret, or the file's content.
    openfaas_trigger_secret: SecretStr = SecretStr("")
    openfaas_trigger_secret_file: str = "/var/openfaas/secrets/okyaku-trigger-secret"
    openfaas_trigger_max_skew_s: int = 300
    # Topics accepted unsigned (comma-separated), for a gateway no one else can reach: the stock
    # connectors cannot sign. Empty (the default): every trigger must be signed.
    openfaas_unsigned_topics: str = ""

    # Web console (okyaku.console): sessions are signed with CONSOLE_SESSION_SECRET; unset, a random
    # secret per process (the local runner sets one shared by its HTTP processes).
    console_session_secret: str = ""
    console_session_ttl_hours: float = 12.0
    console_secure_cookie: str = "auto"  # auto: Secure when served over https; true | false

    # Logging
    log_level: str = "INFO"
    log_format: str = "auto"  # json | text | auto (JSON inside Lambda/OpenFaaS)

    @property
    def migration_url(self) -> str:
        return self.database_migration_url or self.database_url


@lru_cache(maxsize=64)
def _settings_for(environment: FunctionEnvironment | None) -> Settings:
    token = _function_environment.set(environment)
    try:
        return Settings()
    finally:
        _function_environment.reset(token)


class _SettingsCache:
    """``get_settings()``: the process's Settings, or those of the hosted function whose scope
    this is (``function_environment``); built once per environment. ``get_settings.cache_clear()``
    after changing ``os.environ``."""

    def __call__(self) -> Settings:
        return _settings_for(_function_environment.get())

    def cache_clear(self) -> None:
        _settings_for.cache_clear()


get_settings = _SettingsCache()
