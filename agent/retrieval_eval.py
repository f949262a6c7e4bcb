"""Retrieval quality on public data: BM25, dense and hybrid side by side, document-level.

Datasets (read from ../shared/evaldata, never copied):
- banking_knowledge: 698 bank support documents; the customer's scenario text is the query
  and the task's `required_documents` are the relevant ids (dev tasks only).
- stackfaq: 125 FAQ threads (question + answers); each paraphrased question's own thread is
  the one relevant document.

The corpus index lives under `<data_dir>/eval/<dataset>` and query embeddings are cached
beside it, so a re-run embeds nothing new.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from agent.settings import REPO_ROOT, Settings
from agent.tooling import ranking_config
from tools.embeddings import Embedder
from tools.knowledge.documents import Document
from tools.knowledge.embedded import EmbeddedIndex
from tools.knowledge.ranking import MODES

DATASETS = ("banking_knowledge", "stackfaq")
CUTOFFS = (5, 10, 20)


@dataclass(frozen=True)
class Query:
    text: str
    relevant: frozenset[str]


def evaldata_root() -> Path:
    """`../shared/evaldata` next to the checkout (worktrees sit one level deeper)."""
    for base in (REPO_ROOT.parent, REPO_ROOT.parent.parent):
        if (base / "shared" / "evaldata").is_dir():
            return base / "shared" / "evaldata"
    raise FileNotFoundError(f"evaluation data not found: expected ../shared/evaldata next to {REPO_ROOT}")


def load_dataset(name: str, root: Path | None = None) -> tuple[list[Document], list[Query]]:
    root = root or evaldata_root()
    if name == "banking_knowledge":
        folder = root / "tau2" / "banking_knowledge"
        documents = [
            Document(id=r["id"], title=r.get("title") or r["id"], text=r["content"], source=name)
            for r in map(json.loads, (folder / "documents.jsonl").read_text().splitlines())
            if r.get("content", "").strip()
        ]
        tasks = json.loads((folder / "tasks_dev.json").read_text())
        queries = [
            Query(t["user_scenario"]["instructions"], frozenset(t["required_documents"]))
            for t in tasks
            if t.get("required_documents") and t["user_scenario"].get("instructions")
        ]
        return documents, queries
    if name == "stackfaq":
        pairs = json.loads((root / "stackfaq" / "stackExchange-FAQ.json").read_text())["root"]["qapair"]
        documents, queries = [], []
        for number, pair in enumerate(pairs):
            doc_id = f"faq-{number:03d}"
            answers = "\n\n".join(a for a in pair["answer"] if isinstance(a, str))
            documents.append(Document(id=doc_id, title=pair["question"], text=f"{pair['question']}\n\n{answers}", source=name))
            # a few paraphrases are placeholders such as "*": no words, nothing to retrieve with
            queries.extend(Query(q, frozenset({doc_id})) for q in pair["rephr"] if isinstance(q, str) and re.search(r"[A-Za-z]{2}", q))
        return documents, queries
    raise ValueError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")


class CachedEmbedder:
    """Embeddings of texts seen before come from a file; only new texts reach the model."""

    def __init__(self, inner: Embedder, path: Path) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.path = path
        self._cache: dict[str, np.ndarray] = {}
        if path.exists():
            stored = np.load(path)
            self._cache = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
        self._dirty = False

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self._cache}.items())
        if missing:
            vectors = self.inner.embed([t for _, t in missing])
            self._cache.update(zip([k for k, _ in missing], vectors, strict=True))
            self.dim = vectors.shape[1]
            self._dirty = True
        return np.stack([self._cache[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, self.dim), dtype=np.float32)

    def save(self) -> None:
        if self._dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys = list(self._cache)
            np.savez(self.path.with_suffix(".tmp.npz"), keys=np.array(keys), vectors=np.stack([self._cache[k] for k in keys]))
            self.path.with_suffix(".tmp.npz").replace(self.path)
            self._dirty = False


def metrics(ranked: Sequence[str], relevant: frozenset[str]) -> dict[str, float]:
    found = {f"recall@{k}": len(relevant & set(ranked[:k])) / len(relevant) for k in CUTOFFS}
    first = next((i for i, doc in enumerate(ranked[:10], start=1) if doc in relevant), None)
    found["mrr@10"] = 1 / first if first else 0.0
    dcg = sum(1 / math.log2(i + 1) for i, doc in enumerate(ranked[:10], start=1) if doc in relevant)
    ideal = sum(1 / math.log2(i + 1) for i in range(1, min(len(relevant), 10) + 1))
    found["ndcg@10"] = dcg / ideal
    return found


class ModeResult(BaseModel):
    mode: str
    queries: int
    scores: dict[str, float]


class RetrievalReport(BaseModel):
    dataset: str
    documents: int
    chunks: int
    queries: int
    settings: dict[str, object]
    results: list[ModeResult]


def open_eval_index(dataset: str, settings: Settings, embedder: Embedder) -> tuple[EmbeddedIndex, CachedEmbedder, list[Query]]:
    """The dataset's index (built or refreshed incrementally) and its queries."""
    k = settings.knowledge
    folder = settings.data_path / "eval" / f"{dataset}-c{k.chunk_tokens}-o{k.overlap_tokens}"
    cached = CachedEmbedder(embedder, settings.data_path / "eval" / f"queries-{embedder.model_id}.npz")
    documents, queries = load_dataset(dataset)
    index = EmbeddedIndex(folder, cached, ranking_config(settings.knowledge), k.chunk_tokens, k.overlap_tokens)
    index.ingest(documents, source=dataset)
    return index, cached, queries


def evaluate(dataset: str, settings: Settings, embedder: Embedder, modes: Sequence[str] = MODES) -> RetrievalReport:
    index, cached, queries = open_eval_index(dataset, settings, embedder)
    if "bm25" not in modes or len(modes) > 1:  # embed every query window in large batches, once
        cached.embed([w for q in queries for w in index.config.windows(q.text)])
        cached.save()
    results = []
    for mode in modes:
        totals: dict[str, float] = {}
        for query in queries:
            ranked = [doc for doc, _ in index.search_documents(query.text, max(CUTOFFS), mode)]
            for name, value in metrics(ranked, query.relevant).items():
                totals[name] = totals.get(name, 0.0) + value
        results.append(ModeResult(mode=mode, queries=len(queries), scores={n: round(v / len(queries), 4) for n, v in totals.items()}))
    cached.save()
    k = settings.knowledge
    return RetrievalReport(
        dataset=dataset,
        documents=len(index.documents()),
        chunks=index.count(),
        queries=len(queries),
        settings={
            "chunk_tokens": k.chunk_tokens,
            "overlap_tokens": k.overlap_tokens,
            "fusion": k.fusion,
            "weights": {"bm25": k.bm25_weight, "dense": k.dense_weight},
            "short_weights": {"bm25": k.short_bm25_weight, "dense": k.short_dense_weight},
            "rrf_k": k.rrf_k,
            "candidates": k.candidates,
            "query_window_tokens": k.query_window_tokens,
            "window_tie_breaker": k.window_tie_breaker,
            "embedder": embedder.model_id,
        },
        results=results,
    )


METRIC_NAMES = ("recall@5", "recall@10", "recall@20", "mrr@10", "ndcg@10")


def markdown(report: RetrievalReport) -> str:
    lines = [
        f"### {report.dataset}: {report.queries} queries, {report.documents} documents, {report.chunks} chunks",
        "",
        "| mode | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---:|" * len(METRIC_NAMES),
    ]
    for result in report.results:
        lines.append(f"| {result.mode} | " + " | ".join(f"{result.scores[m]:.3f}" for m in METRIC_NAMES) + " |")
    s = report.settings
    lines += [
        "",
        f"Chunks of {s['chunk_tokens']} tokens, {s['overlap_tokens']} overlap; query windows of {s['query_window_tokens']} tokens"
        f" (BM25 dis_max tie-breaker {s['window_tie_breaker']}); fusion {s['fusion']} {s['weights']}, one-window queries {s['short_weights']};"
        f" embedder {s['embedder']}.",
    ]
    return "\n".join(lines) + "\n"


def chart(report: RetrievalReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(report.results))
    positions = np.arange(len(METRIC_NAMES))
    for i, result in enumerate(report.results):
        ax.bar(positions + i * width, [result.scores[m] for m in METRIC_NAMES], width, label=result.mode)
    ax.set_xticks(positions + width * (len(report.results) - 1) / 2, METRIC_NAMES)
    ax.set_ylim(0, 1)
    ax.set_title(f"{report.dataset} ({report.queries} queries)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
