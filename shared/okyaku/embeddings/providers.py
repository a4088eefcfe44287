"""Where the embedder comes from: created on first use, shared by a process's requests and messages."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from okyaku.embeddings.protocol import Embedder, embed_query


class LazyEmbedder:
    """Defers creating the real embedder (a model load or a server probe) until it is needed."""

    def __init__(self, factory: Callable[[], Embedder]) -> None:
        self._factory = factory
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    def resolve(self) -> Embedder:
        if self._embedder is None:
            with self._lock:
                if self._embedder is None:
                    self._embedder = self._factory()
        return self._embedder

    @property
    def model(self) -> str:
        return self.resolve().model

    @property
    def dimension(self) -> int:
        return self.resolve().dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.resolve().embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return embed_query(self.resolve(), text)
