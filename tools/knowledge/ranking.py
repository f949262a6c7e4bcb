"""Hybrid ranking of index rows: BM25 and dense scores, candidate pools, fusion.

Rows are chunks; `group_max` lifts row scores to documents (a document scores as its best
chunk) for document-level retrieval. A long query (a customer's whole story) is split into
windows of sentences. The dense side embeds each window and averages them: MiniLM reads only
256 word pieces, so embedding the whole story would silently drop its end. The BM25 side
scores each window on its own and combines them like OpenSearch's `dis_max`, so the one
sentence that names a product still finds that product's articles. Fusion weights depend on
the query's length: a one-window question leans on dense (paraphrases), a long story gives
BM25 more say (product names). Figures on banking_knowledge / StackFAQ dev are in the README.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import ThreadpoolController

from tools.embeddings import Embedder
from tools.knowledge.chunking import count_tokens
from tools.knowledge.fusion import fuse, ranks
from tools.knowledge.lexical import Bm25

MODES = ("bm25", "dense", "hybrid")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class RankingConfig:
    fusion: str = "min_max"
    rrf_k: int = 60
    weights: dict[str, float] = field(default_factory=lambda: {"bm25": 0.3, "dense": 0.7})  # queries of several windows
    short_weights: dict[str, float] = field(default_factory=lambda: {"bm25": 0.2, "dense": 0.8})  # one-window queries
    candidates: int = 100
    query_window_tokens: int = 128
    window_tie_breaker: float = 0.1

    def windows(self, query: str) -> list[str]:
        """The query's windows; the query itself when it has no sentence (blank or one token)."""
        return query_windows(query, self.query_window_tokens) or [query]

    def weights_for(self, windows: int) -> dict[str, float]:
        return self.short_weights if windows <= 1 else self.weights


def query_windows(query: str, window_tokens: int) -> list[str]:
    """Consecutive sentences grouped up to `window_tokens`; one window for a short query."""
    sentences = [s.strip() for s in _SENTENCE.split(query) if s.strip()]
    windows: list[str] = []
    current: list[str] = []
    size = 0
    for sentence in sentences:
        tokens = count_tokens(sentence)
        if current and size + tokens > window_tokens:
            windows.append(" ".join(current))
            current, size = [], 0
        current.append(sentence)
        size += tokens
    if current:
        windows.append(" ".join(current))
    return windows


def query_vector(windows: list[str], embedder: Embedder) -> np.ndarray:
    """Unit-length mean of the query's window embeddings."""
    mean = embedder.embed(windows).mean(axis=0)
    return (mean / (np.linalg.norm(mean) or 1.0)).astype(np.float32)


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


def dense_scores(windows: list[str], vectors: np.ndarray, embedder: Embedder) -> np.ndarray:
    """Exact cosine scores. One BLAS thread: a matrix-vector product is bound by memory, and on a
    busy 2-core machine a second BLAS thread made it 10x slower at 10k rows (bench.retrieval)."""
    vector = query_vector(windows, embedder)
    with _blas().limit(limits=1, user_api="blas"):
        return vectors @ vector


def ranker_scores(windows: list[str], bm25: Bm25 | None, vectors: np.ndarray, embedder: Embedder, config: RankingConfig, mode: str) -> dict[str, np.ndarray]:
    """Each sub-ranker's score for every row (BM25 rows without a query term score NaN)."""
    if mode not in MODES:
        raise ValueError(f"unknown retrieval mode {mode!r} (known: {', '.join(MODES)})")
    scores: dict[str, np.ndarray] = {}
    if mode in ("bm25", "hybrid") and bm25 is not None:
        lexical = bm25.dis_max_scores(windows, config.window_tie_breaker).astype(np.float64)
        scores["bm25"] = np.where(lexical > 0, lexical, np.nan)
    if mode in ("dense", "hybrid"):
        scores["dense"] = dense_scores(windows, vectors, embedder).astype(np.float64)
    return scores


def group_max(scores: np.ndarray, group_starts: np.ndarray) -> np.ndarray:
    """Best row score per group of consecutive rows (NaN rows ignored; all-NaN groups stay NaN)."""
    filled = np.where(np.isnan(scores), -np.inf, scores)
    best = np.maximum.reduceat(filled, group_starts) if len(filled) else filled
    return np.where(np.isinf(best), np.nan, best)


@dataclass
class Ranked:
    rows: np.ndarray  # candidate rows, best first
    fused: np.ndarray
    ranks: dict[str, np.ndarray]  # per ranker, rank of each candidate (0: not among its candidates)

    def top(self, k: int) -> Iterator[tuple[int, float, dict[str, int | None]]]:
        for i in range(min(k, len(self.rows))):
            yield int(self.rows[i]), float(self.fused[i]), {name: int(r[i]) or None for name, r in self.ranks.items()}


def _top(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest non-NaN values, best first."""
    present = np.flatnonzero(~np.isnan(values))
    if len(present) > n:
        present = present[np.argpartition(-values[present], n - 1)[:n]]
    return present[np.argsort(-values[present], kind="stable")]


def fuse_rows(scores: dict[str, np.ndarray], allowed: np.ndarray | None, config: RankingConfig, weights: dict[str, float]) -> Ranked:
    """Each ranker's top `candidates` allowed rows, fused over their union with `weights`."""
    pools = {}
    for name, values in scores.items():
        if allowed is not None:
            values = np.where(allowed, values, np.nan)
        pools[name] = _top(values, config.candidates)
    union = np.unique(np.concatenate(list(pools.values()))) if pools else np.zeros(0, dtype=np.int64)
    per_ranker = {}
    candidate_ranks = {}
    for name, pool in pools.items():
        column = np.full(len(union), np.nan)
        position = np.searchsorted(union, pool)
        column[position] = scores[name][pool]
        per_ranker[name] = column
        candidate_ranks[name] = ranks(column)
    if not len(union):
        return Ranked(union, np.zeros(0), candidate_ranks)
    fused = fuse(config.fusion, per_ranker, weights, config.rrf_k) if len(per_ranker) > 1 else np.nan_to_num(next(iter(per_ranker.values())), nan=-np.inf)
    order = np.argsort(-fused, kind="stable")
    return Ranked(union[order], fused[order], {name: r[order] for name, r in candidate_ranks.items()})


def rank_rows(
    query: str, bm25: Bm25 | None, vectors: np.ndarray, embedder: Embedder, allowed: np.ndarray | None, config: RankingConfig, mode: str = "hybrid"
) -> Ranked:
    windows = config.windows(query)
    return fuse_rows(ranker_scores(windows, bm25, vectors, embedder, config, mode), allowed, config, config.weights_for(len(windows)))
