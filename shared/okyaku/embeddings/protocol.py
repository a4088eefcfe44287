"""What the embeddings pipeline needs from an embedding model (the LLM layer provides real ones)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors of ``dimension`` floats, named by ``model``."""

    @property
    def model(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text, in order; raises if the model cannot embed them."""
        ...


def embed_query(embedder: Embedder, text: str) -> list[float]:
    """Embed a search query; models that distinguish queries from documents expose ``embed_query``."""
    query_embed = getattr(embedder, "embed_query", None)
    if callable(query_embed):
        vector: list[float] = query_embed(text)
        return vector
    return embedder.embed([text])[0]
