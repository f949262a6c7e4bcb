"""Score fusion of several rankers over the same candidates: reciprocal rank or weighted min-max.

Both take, per ranker, a dense score array over the candidates with NaN where that ranker
did not return the candidate, and give back one fused score per candidate.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate by descending score; 0 where the score is NaN."""
    result = np.zeros(len(scores), dtype=np.int64)
    present = np.flatnonzero(~np.isnan(scores))
    order = present[np.argsort(-scores[present], kind="stable")]
    result[order] = np.arange(1, len(order) + 1)
    return result


def reciprocal_rank(scores: Mapping[str, np.ndarray], weights: Mapping[str, float], k: int = 60) -> np.ndarray:
    """Sum of weight / (k + rank): insensitive to score scales, so nothing needs tuning but k."""
    total = np.zeros(len(next(iter(scores.values()))), dtype=np.float64)
    for name, values in scores.items():
        rank = ranks(values)
        total += np.where(rank > 0, weights.get(name, 1.0) / (k + rank), 0.0)
    return total


def min_max(scores: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted mean of each ranker's scores rescaled to [0, 1] over its own candidates.

    A candidate a ranker did not return counts as that ranker's minimum (0), as OpenSearch's
    normalization processor does.
    """
    total = np.zeros(len(next(iter(scores.values()))), dtype=np.float64)
    weight_sum = sum(weights.get(name, 1.0) for name in scores) or 1.0
    for name, values in scores.items():
        present = ~np.isnan(values)
        if not present.any():
            continue
        low, high = values[present].min(), values[present].max()
        scaled = np.where(present, (values - low) / (high - low) if high > low else 1.0, 0.0)
        total += weights.get(name, 1.0) * np.nan_to_num(scaled)
    return total / weight_sum


def fuse(method: str, scores: Mapping[str, np.ndarray], weights: Mapping[str, float], rrf_k: int = 60) -> np.ndarray:
    if method == "rrf":
        return reciprocal_rank(scores, weights, rrf_k)
    if method == "min_max":
        return min_max(scores, weights)
    raise ValueError(f"unknown fusion method {method!r} (known: rrf, min_max)")
