"""Services the read tools lean on, created on first use and shared by a process's runs:
semantic search (when the RAG feature is on) and lead scoring (when the predictions package
and its ``ml`` extra are installed). Each degrades to a clear "unavailable" rather than failing."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from okyaku.features import feature_enabled
from okyaku.runtime import Runtime

if TYPE_CHECKING:
    from okyaku.embeddings.search import SemanticSearch

logger = logging.getLogger(__name__)


class ToolServices:
    def __init__(self, runtime: Runtime, *, search: SemanticSearch | None = None) -> None:
        self.runtime = runtime
        self._search = search
        self._lock = threading.Lock()

    @property
    def search_enabled(self) -> bool:
        return feature_enabled(self.runtime.settings, "rag")

    def semantic_search(self) -> SemanticSearch:
        """Hybrid search with the same embedder choice as the embeddings function (Ollama's model
        when it answers, else the local one); searches by keyword alone if embedding fails."""
        with self._lock:
            if self._search is None:
                from okyaku.embeddings.llm_adapter import select_embedder
                from okyaku.embeddings.providers import LazyEmbedder
                from okyaku.embeddings.search import SemanticSearch

                settings = self.runtime.settings
                self._search = SemanticSearch(LazyEmbedder(lambda: select_embedder(settings)))
            return self._search

    def lead_score(self, organization_id: uuid.UUID, contact_id: uuid.UUID) -> dict[str, Any]:
        """The prediction service's lead score, or ``{"available": False, "reason": ...}``."""
        try:
            from okyaku.predictions.service import PredictionService
        except ImportError as error:  # the ml extra (numpy, scikit-learn) is not installed
            return {"available": False, "reason": f"lead scoring is not installed here ({error.name} missing)"}
        if not feature_enabled(self.runtime.settings, "predictions"):
            return {"available": False, "reason": "predictions are disabled (AI_PREDICTIONS_ENABLED=false)"}
        payload = PredictionService(self.runtime).lead_score(organization_id, contact_id)
        return {
            "available": True,
            "score": payload.get("score"),
            "probability": payload.get("probability"),
            "method": payload.get("method"),
            "model_version": payload.get("model_version"),
            "typical_score": payload.get("typical_score"),
            "top_factors": list(payload.get("factors") or [])[:5],
            "explanation": payload.get("explanation"),
            "degraded": payload.get("degraded", False),
        }
