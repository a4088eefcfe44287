"""A deterministic lexical embedder (hashed bag of words) for tests and benchmarks.

It is honest about what it is: texts that share words are close, synonyms are not. It is
never chosen as a default; the LLM layer's embedders are.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "es", "ed", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


class HashingEmbedder:
    """Signed feature hashing of stemmed words into ``dimension`` buckets, L2-normalised."""

    def __init__(self, dimension: int = 256, model: str = "hashing-bow-v1") -> None:
        self._dimension = dimension
        self._model = model
        self.calls = 0  # embed() calls: lets callers check that unchanged text is not re-embedded
        self.texts_embedded = 0

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        self.texts_embedded += len(texts)
        return [self._vector(text) for text in texts]

    def _vector(self, text: str) -> list[float]:
        vector = [0.0] * self._dimension
        for word in _WORD.findall(text.lower()):
            digest = hashlib.blake2b(_stem(word).encode(), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            vector[value % self._dimension] += 1.0 if (value >> 63) & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0.0:
            vector[0] = 1.0  # an empty text still needs a valid (non-zero) vector for cosine distance
            return vector
        return [v / norm for v in vector]
