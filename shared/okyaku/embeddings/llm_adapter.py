"""Adapters from the LLM layer (``okyaku.llm``) to this package's ``Embedder``.

The model is chosen once per process: Ollama's embedding model when it answers, else the
in-process model. Vectors of one process therefore never mix models; each model's rows live
side by side in the table, and backfill fills in whichever model is missing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from okyaku.config import Settings
from okyaku.embeddings.protocol import Embedder
from okyaku.errors import DependencyUnavailable

if TYPE_CHECKING:
    from okyaku.llm import LocalEmbedder, SyncLLM

logger = logging.getLogger(__name__)


class LocalModelEmbedder:
    """The in-process MiniLM model (384 dimensions)."""

    def __init__(self, local: LocalEmbedder | None = None) -> None:
        from okyaku.llm import get_local_embedder

        self._local = local or get_local_embedder()

    @property
    def model(self) -> str:
        return str(self._local.name)

    @property
    def dimension(self) -> int:
        return int(self._local.dimension)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self._local.embed(list(texts))


class GatewayEmbedder:
    """An Ollama embedding model through the gateway (retries, breaker, concurrency limit)."""

    def __init__(self, llm: SyncLLM, model: str, dimension: int) -> None:
        self._llm = llm
        self._model = model
        self._dimension = dimension

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        result = self._llm.embed(list(texts), model=self._model)
        if result.model != self._model or result.dimension != self._dimension:
            # Never store another model's vectors under this model's name: fail, the queue retries.
            raise DependencyUnavailable(
                f"embeddings came from {result.model} ({result.dimension}), not {self._model} ({self._dimension})",
                code="embedding_model_changed",
            )
        return result.vectors


def select_embedder(settings: Settings) -> Embedder:
    """Ollama's ``OLLAMA_EMBEDDING_MODEL`` when it answers a probe, else the local model."""
    from okyaku.llm import LLMConfig, LLMGateway, is_local_model

    name = settings.ollama_embedding_model
    if is_local_model(name):
        return LocalModelEmbedder()
    # No silent per-call fallback: this process commits to one model.
    config = dataclasses.replace(LLMConfig.from_settings(settings), embedding_fallback_local=False, max_retries=0)
    gateway = LLMGateway(config)
    try:
        probe = gateway.sync.embed(["dimension probe"], model=name)
    except DependencyUnavailable as error:
        logger.warning("Ollama embeddings unavailable (%s); using the local model", error.message)
        gateway.close()
        return LocalModelEmbedder()
    # Retries are welcome once the model is chosen.
    serving = LLMGateway(dataclasses.replace(config, max_retries=settings.llm_max_retries))
    gateway.close()
    return GatewayEmbedder(serving.sync, name, probe.dimension)
