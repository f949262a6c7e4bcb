"""Embedded hybrid search latency at 10k and 100k chunks, and ingestion throughput.

Scale runs use synthetic documents (Zipf-distributed words, one section per chunk) with
random unit vectors standing in for embeddings, so the timings cover what the index does
(chunking, BM25, exact dense scoring, filters, fusion, persistence) and exclude the model.
Query vectors are computed before timing: latency excludes query embedding. Baselines in
the same run, same index: BM25 alone and brute-force dense alone. Ingestion with the real
MiniLM embedder is measured separately on banking_knowledge documents.

    python -m bench.retrieval [--sizes 10000 100000] [--queries 200] [--out bench/results/retrieval.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.results import write_result
from tools.knowledge.documents import Document
from tools.knowledge.embedded import EmbeddedIndex

DIM = 384
SECTIONS_PER_DOCUMENT = 5


class RandomEmbedder:
    """Random unit vectors, deterministic per text: the index's cost without the model's."""

    model_id = "random-unit"
    dim = DIM

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.stack([np.random.default_rng(abs(hash(t)) % 2**32).standard_normal(DIM) for t in texts]).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return sorted({"".join(rng.choice(letters, rng.integers(4, 10))) for _ in range(size)})


def synthetic_documents(chunks: int, rng: np.random.Generator) -> tuple[list[Document], list[str]]:
    words = vocabulary(30000, rng)
    weights = 1 / np.arange(1, len(words) + 1) ** 1.1
    weights /= weights.sum()
    products = ["cards", "accounts", "loans", "payments", "orders"]
    count = chunks // SECTIONS_PER_DOCUMENT
    drawn = rng.choice(len(words), size=(count, SECTIONS_PER_DOCUMENT, 40), p=weights)  # one draw: fast at 100k
    documents = []
    for number in range(count):
        sections = []
        for section in range(SECTIONS_PER_DOCUMENT):
            sentence = " ".join(words[i] for i in drawn[number, section])
            sections.append(f"## Part {section}\n{sentence.capitalize()}.")
        documents.append(
            Document(id=f"doc-{number}", title=f"Article {number}", text="\n\n".join(sections), source="bench", product=products[number % len(products)])
        )
    return documents, words


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def time_searches(index: EmbeddedIndex, queries: list[str], mode: str, filters: dict | None = None) -> dict[str, float]:
    timings = []
    for query in queries:
        start = time.perf_counter()
        index.search(query, filters or {}, 10, mode=mode)
        timings.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": round(statistics.median(timings), 2), "p95_ms": round(percentile(timings, 0.95), 2), "mean_ms": round(statistics.fmean(timings), 2)}


class PrecomputedEmbedder(RandomEmbedder):
    """Query vectors made before the timed loop, so search latency excludes query embedding."""

    def __init__(self, queries: list[str]) -> None:
        self.vectors = {q: v for q, v in zip(queries, RandomEmbedder().embed(queries), strict=True)}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[t] if t in self.vectors else RandomEmbedder().embed([t])[0] for t in texts])


def scale_run(chunks: int, query_count: int, folder: Path) -> dict[str, object]:
    rng = np.random.default_rng(chunks)
    documents, words = synthetic_documents(chunks, rng)
    queries = [" ".join(rng.choice(words[:5000], rng.integers(3, 8))) for _ in range(query_count)]
    index = EmbeddedIndex(folder, RandomEmbedder())
    start = time.perf_counter()
    report = index.ingest(documents, source="bench")
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    reopened = EmbeddedIndex(folder, PrecomputedEmbedder(queries))
    load_s = time.perf_counter() - start
    for query in queries[:10]:  # warm-up
        reopened.search(query, {}, 10)
    hybrid = time_searches(reopened, queries, "hybrid")
    bm25 = time_searches(reopened, queries, "bm25")
    dense = time_searches(reopened, queries, "dense")
    filtered = time_searches(reopened, queries, "hybrid", {"product": ["cards", "loans"]})
    return {
        "chunks": report.chunks,
        "documents": len(documents),
        "ingest_s_without_model": round(ingest_s, 2),
        "ingest_chunks_per_s_without_model": round(report.chunks / ingest_s),
        "load_s": round(load_s, 2),
        "hybrid": hybrid,
        "hybrid_filtered": filtered,
        "baseline_bm25_only": bm25,
        "baseline_dense_brute_force": dense,
        "hybrid_over_bm25_p50": round(hybrid["p50_ms"] / bm25["p50_ms"], 2),
        "hybrid_over_dense_p50": round(hybrid["p50_ms"] / dense["p50_ms"], 2),
    }


def model_ingest(folder: Path, limit: int) -> dict[str, object]:
    """Ingestion with the real MiniLM embedder, first time and unchanged re-ingest."""
    from agent.retrieval_eval import load_dataset
    from tools.embeddings import SentenceTransformerEmbedder

    documents = load_dataset("banking_knowledge")[0][:limit]
    index = EmbeddedIndex(folder, SentenceTransformerEmbedder())
    start = time.perf_counter()
    report = index.ingest(documents, source="bench")
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = index.ingest(documents, source="bench")
    second = time.perf_counter() - start
    return {
        "documents": len(documents),
        "chunks": report.chunks,
        "first_ingest_s": round(first, 2),
        "chunks_per_s": round(report.chunks / first, 1),
        "unchanged_reingest_s": round(second, 2),
        "unchanged_reingest_embedded_chunks": again.embedded_chunks,
        "reingest_speedup": round(first / second, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--model-docs", type=int, default=150)
    parser.add_argument("--out", type=Path, default=Path("bench/results/retrieval.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scale = {str(size): scale_run(size, args.queries, Path(tmp) / f"s{size}") for size in args.sizes}
        model = model_ingest(Path(tmp) / "model", args.model_docs) if args.model_docs else {}
    result = {
        "benchmark": "retrieval",
        "what": "embedded hybrid search latency (k=10, excluding query embedding) and ingestion throughput",
        "scale": scale,
        "ingest_with_minilm": model,
        "target": "hybrid p50 <= 20 ms at 100k chunks",
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],  # the machine is shared: context for the timings
    }
    write_result(args.out, result)
    for size, figures in scale.items():
        print(f"{size:>7} chunks: hybrid p50 {figures['hybrid']['p50_ms']} ms (bm25 {figures['baseline_bm25_only']['p50_ms']}, dense {figures['baseline_dense_brute_force']['p50_ms']}); ingest {figures['ingest_chunks_per_s_without_model']} chunks/s without model")
    if model:
        print(f"MiniLM ingest: {model['chunks_per_s']} chunks/s; unchanged re-ingest {model['reingest_speedup']}x faster")


if __name__ == "__main__":
    main()
