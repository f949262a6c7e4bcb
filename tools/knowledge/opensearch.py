"""The OpenSearch knowledge backend: one chunk per document in an index with an explicit mapping.

Hybrid search uses OpenSearch's native `hybrid` query (a BM25 `match` and a `knn` clause, the
same metadata filters inside both) through a search pipeline that this class creates
idempotently: `normalization-processor` (min_max + arithmetic_mean with the configured
weights) or `score-ranker-processor` (RRF, OpenSearch 2.19+); a second pipeline (`-short`)
carries the weights for one-window queries. A long query's windows become a `dis_max` of
`match` clauses, as the embedded backend scores them. Clusters without the
neural-search plugin get the client-side fallback: the two sub-queries run separately and
are fused here with the embedded backend's fusion code.

Ingestion writes every chunk of a changed document with bulk requests (retried on 429 and
connection errors) before it records the document's content hash, so an interrupted run is
redone for that document on the next ingest instead of leaving it marked as current.

Every response is read whole within its timeout and a size bound (`opensearch_transport`).
A failing cluster is a `ClusterError`: transient (unreachable, too slow, 429 with its
Retry-After, 502/503/504) or not, naming the cluster and its reason, never an opensearch-py
traceback. Searches get their own short timeout and no transport retries: the executor retries
a transient failure within the step's time. A cluster that refuses the `hybrid` query (no
neural search, or older than 2.19, which lacks `pagination_depth`) is searched with
client-side fusion from then on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import structlog
from opensearchpy import OpenSearch, helpers
from opensearchpy.exceptions import ConnectionError as ClusterConnectionError
from opensearchpy.exceptions import NotFoundError, OpenSearchException, RequestError, SerializationError, TransportError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.base import first_problem
from tools.contracts.knowledge import DateRange, FilterValue, Passage
from tools.embeddings import Embedder
from tools.knowledge.chunking import chunk_document, indexed_text
from tools.knowledge.citations import citation_id
from tools.knowledge.documents import Document
from tools.knowledge.embedded import IngestReport, claim
from tools.knowledge.errors import ClusterError
from tools.knowledge.filters import check_filters
from tools.knowledge.fusion import fuse, ranks
from tools.knowledge.opensearch_transport import BoundedHttpxConnection
from tools.knowledge.ranking import MODES, RankingConfig, query_vector

log = structlog.get_logger(__name__)
BM25, DENSE = "bm25", "dense"
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
SCAN_PAGE = 1000  # stored-document records read per scroll page


# ---- what a search answers (validated: a cluster's odd answer is an error, not a crash) ----
class _ChunkSource(BaseModel):
    model_config = ConfigDict(extra="ignore")
    document_id: str
    title: str = ""
    section: str = ""
    passage: str
    start: int
    end: int


class _Hit(BaseModel):
    id: str = Field(alias="_id")
    score: float | None = Field(None, alias="_score")
    source: _ChunkSource = Field(alias="_source")


class _HitList(BaseModel):
    hits: list[_Hit]


class _SearchResponse(BaseModel):
    hits: _HitList


# ---- request bodies (pure functions; contract-tested against the documented DSL) -------------
def index_body(dim: int) -> dict[str, Any]:
    """Explicit mapping: English-analysed text, HNSW knn_vector (cosine), keyword/date metadata."""
    return {
        "settings": {"index": {"knn": True, "number_of_shards": 1}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "text": {"type": "text", "analyzer": "english"},
                "passage": {"type": "text", "index": False},
                "title": {"type": "text", "analyzer": "english"},
                "section": {"type": "keyword"},
                "document_id": {"type": "keyword"},
                "source": {"type": "keyword"},
                "product": {"type": "keyword"},
                "category": {"type": "keyword"},
                "updated": {"type": "date", "format": "strict_date"},
                "start": {"type": "integer"},
                "end": {"type": "integer"},
                "content_hash": {"type": "keyword"},
                "embedding": {
                    "type": "knn_vector",
                    "dimension": dim,
                    "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene", "parameters": {"m": 16, "ef_construction": 128}},
                },
            },
        },
    }


def documents_index_body() -> dict[str, Any]:
    """One record per ingested document: its source, content hash and chunk count."""
    return {"mappings": {"dynamic": "strict", "properties": {"source": {"type": "keyword"}, "content_hash": {"type": "keyword"}, "chunks": {"type": "integer"}}}}


def pipeline_body(config: RankingConfig, weights_by_ranker: Mapping[str, float] | None = None) -> dict[str, Any]:
    """The hybrid search pipeline; weights (default: the long-query ones) follow the sub-query
    order (BM25, then k-NN)."""
    chosen = config.weights if weights_by_ranker is None else weights_by_ranker
    weights = [chosen.get(BM25, 1.0), chosen.get(DENSE, 1.0)]
    if config.fusion == "rrf":
        processor = {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": config.rrf_k}}}
    else:
        total = sum(weights) or 1.0
        processor = {
            "normalization-processor": {
                "normalization": {"technique": "min_max"},
                "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [w / total for w in weights]}},
            }
        }
    return {"description": "caseplan knowledge: BM25 + k-NN hybrid", "phase_results_processors": [processor]}


def filter_clauses(filters: Mapping[str, FilterValue]) -> list[dict[str, Any]]:
    check_filters(filters)
    clauses: list[dict[str, Any]] = []
    for name, value in filters.items():
        if isinstance(value, DateRange):
            bounds = {op: getattr(value, op).isoformat() for op in ("gte", "lte") if getattr(value, op) is not None}
            clauses.append({"range": {name: bounds}})
        elif isinstance(value, str):
            clauses.append({"term": {name: value}})
        else:
            clauses.append({"terms": {name: list(value)}})
    return clauses


def bm25_query(query: str | Sequence[str], filters: Mapping[str, FilterValue], tie_breaker: float = 0.0) -> dict[str, Any]:
    """One `match`; several query windows: a `dis_max` of one `match` per window."""
    windows = [query] if isinstance(query, str) else list(query)
    if len(windows) == 1:
        text: dict[str, Any] = {"match": {"text": {"query": windows[0]}}}
    else:
        text = {"dis_max": {"queries": [{"match": {"text": {"query": w}}} for w in windows], "tie_breaker": tie_breaker}}
    return {"bool": {"must": [text], "filter": filter_clauses(filters)}}


def knn_query(vector: Sequence[float], filters: Mapping[str, FilterValue], k: int) -> dict[str, Any]:
    """k-NN with the filter inside the clause (efficient filtering), not as a post-filter."""
    clause: dict[str, Any] = {"vector": [float(x) for x in vector], "k": k}
    clauses = filter_clauses(filters)
    if clauses:
        clause["filter"] = {"bool": {"filter": clauses}}
    return {"knn": {"embedding": clause}}


def hybrid_body(
    query: str | Sequence[str], vector: Sequence[float], filters: Mapping[str, FilterValue], k: int, candidates: int, tie_breaker: float = 0.0
) -> dict[str, Any]:
    return {
        "size": k,
        "_source": {"excludes": ["embedding"]},
        "query": {"hybrid": {"pagination_depth": candidates, "queries": [bm25_query(query, filters, tie_breaker), knn_query(vector, filters, candidates)]}},
    }


# ---- the backend --------------------------------------------------------------------------
class OpenSearchIndex:
    backend_name = "opensearch"
    in_process = False

    def __init__(
        self,
        client: OpenSearch,
        index: str,
        embedder: Embedder,
        config: RankingConfig | None = None,
        *,
        search_client: OpenSearch | None = None,
        pipeline: str = "caseplan-hybrid",
        native_hybrid: bool = True,
        chunk_tokens: int = 300,
        overlap_tokens: int = 50,
        bulk_retries: int = 3,
    ) -> None:
        self.client = client
        self.search_client = search_client or client  # searches: a short timeout, no transport retries
        self.index = index
        self.documents_index = f"{index}-documents"
        self.embedder = embedder
        self.config = config or RankingConfig()
        self.pipeline = pipeline
        self.native_hybrid = native_hybrid
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self.bulk_retries = bulk_retries

    @classmethod
    def from_settings(cls, knowledge: Any, embedder: Embedder, config: RankingConfig) -> OpenSearchIndex:
        """Connection, auth and TLS from the `knowledge.opensearch` settings and the environment."""
        os_settings = knowledge.opensearch
        password = os.environ.get(os_settings.password_env)
        auth = (os_settings.username, password or "") if os_settings.username else None

        def client(timeout_s: float, retries: int) -> OpenSearch:
            return OpenSearch(
                hosts=[os_settings.url],
                connection_class=BoundedHttpxConnection,
                http_auth=auth,
                verify_certs=os_settings.verify_certs,
                ca_certs=os_settings.ca_certs,
                timeout=timeout_s,
                retry_on_timeout=retries > 0,
                max_retries=retries,
            )

        return cls(
            client(os_settings.timeout_s, 2),
            os_settings.index,
            embedder,
            config,
            search_client=client(os_settings.search_timeout_s, 0),
            pipeline=os_settings.pipeline,
            native_hybrid=os_settings.native_hybrid,
            chunk_tokens=knowledge.chunk_tokens,
            overlap_tokens=knowledge.overlap_tokens,
            bulk_retries=os_settings.bulk_retries,
        )

    @property
    def cluster(self) -> str:
        """host:port of the cluster's nodes, for messages."""
        return ", ".join(f"{h.get('host')}:{h.get('port')}{h.get('url_prefix', '')}" for h in self.client.transport.hosts) or "the cluster"

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """opensearch-py's failures as one ClusterError naming the cluster, the request and why."""
        try:
            yield
        except ClusterConnectionError as exc:  # unreachable, TLS, too slow (ConnectionTimeout)
            raise ClusterError(f"OpenSearch at {self.cluster}: {what}: cannot get an answer ({_reason(exc)})", transient=True) from None
        except TransportError as exc:
            status = exc.status_code
            raise ClusterError(
                f"OpenSearch at {self.cluster}: {what} refused ({status}: {_reason(exc)})",
                transient=status in TRANSIENT_STATUSES,
                retry_after=getattr(exc, "retry_after", None),
            ) from None
        except (SerializationError, OpenSearchException, UnicodeDecodeError) as exc:
            raise ClusterError(f"OpenSearch at {self.cluster}: {what}: the answer is not JSON ({_reason(exc)})", transient=False) from None

    # ---- set-up ---------------------------------------------------------------------------
    def ensure_index(self) -> bool:
        """Create the chunk and document indices if missing; True when anything was created."""
        created = False
        for name, body in ((self.index, index_body(self.embedder.dim)), (self.documents_index, documents_index_body())):
            with self._calling(f"creating index {name}"):
                if self.client.indices.exists(index=name):
                    continue
                try:
                    self.client.indices.create(index=name, body=body)
                    created = True
                except RequestError as exc:  # another process created it first
                    if "already_exists" not in str(exc.error):
                        raise
        return created

    def pipeline_for(self, windows: int) -> str:
        """The pipeline whose weights fit a query of `windows` windows."""
        return f"{self.pipeline}-short" if windows <= 1 else self.pipeline

    def ensure_pipeline(self) -> bool:
        """Create or update the two search pipelines only where they differ; False if the cluster
        has no search pipelines or neural search (then hybrid search fuses client-side)."""
        for windows in (2, 1):
            name = self.pipeline_for(windows)
            wanted = pipeline_body(self.config, self.config.weights_for(windows))
            path = f"/_search/pipeline/{name}"
            try:
                with self._calling(f"reading search pipeline {name}"):
                    try:
                        current = self.client.transport.perform_request("GET", path).get(name)
                    except NotFoundError:
                        current = None
            except ClusterError as exc:
                if exc.transient:  # down or overloaded, not lacking the feature: say so
                    raise

                log.warning("knowledge.opensearch_no_pipelines", error=str(exc))
                self.native_hybrid = False
                return False
            if current is not None and current.get("phase_results_processors") == wanted["phase_results_processors"]:
                continue
            try:
                with self._calling(f"creating search pipeline {name}"):
                    self.client.transport.perform_request("PUT", path, body=wanted)
            except ClusterError as exc:
                if exc.transient:
                    raise
                log.warning("knowledge.opensearch_pipeline_refused", error=str(exc))
                self.native_hybrid = False
                return False
        return True

    # ---- ingestion ------------------------------------------------------------------------
    def _stored(self) -> dict[str, dict[str, Any]]:
        """Every stored document's record, all pages of them (a scroll, not one capped search)."""
        self.ensure_index()
        with self._calling(f"reading {self.documents_index}"):
            hits = helpers.scan(self.client, index=self.documents_index, query={"query": {"match_all": {}}}, size=SCAN_PAGE)
            stored = {hit["_id"]: hit["_source"] for hit in hits}
        if any(not isinstance(record, dict) for record in stored.values()):
            raise ClusterError(f"OpenSearch at {self.cluster}: {self.documents_index} holds records without a _source", transient=False)
        return stored

    def _bulk(self, actions: list[dict[str, Any]]) -> None:
        if not actions:
            return
        with self._calling(f"bulk write to {actions[0]['_index']}"):
            for ok, item in helpers.streaming_bulk(
                self.client, actions, max_retries=self.bulk_retries, initial_backoff=0.5, raise_on_error=False, raise_on_exception=True
            ):
                if not ok:
                    [(operation, detail)] = item.items()
                    reason = detail.get("error", {}).get("reason") if isinstance(detail.get("error"), dict) else detail.get("error")
                    raise ClusterError(
                        f"OpenSearch at {self.cluster}: {operation} of {detail.get('_id')} in {detail.get('_index')} refused "
                        f"({detail.get('status')}: {str(reason)[:200]}); documents before it are stored, run the ingest again",
                        transient=detail.get("status") in TRANSIENT_STATUSES,
                    )

    def ingest(self, documents: Sequence[Document], source: str | None = None, progress: Callable[[int, int], None] | None = None) -> IngestReport:
        stored = self._stored()
        report = IngestReport()
        accepted, report.refused = claim(documents, {doc_id: meta["source"] for doc_id, meta in stored.items() if isinstance(meta.get("source"), str)})
        incoming = {d.id: d for d in accepted}
        changed = [d for d in incoming.values() if stored.get(d.id, {}).get("content_hash") != d.content_hash]
        report.unchanged = len(incoming) - len(changed)
        chunks = {d.id: chunk_document(d, self.chunk_tokens, self.overlap_tokens) for d in changed}
        total = sum(len(c) for c in chunks.values())
        for document in changed:
            (report.updated if document.id in stored else report.added).append(document.id)
            pieces = chunks[document.id]
            vectors = self.embedder.embed([indexed_text(document, c) for c in pieces]) if pieces else np.zeros((0, self.embedder.dim))
            actions = [self._chunk_action(document, chunk, vector) for chunk, vector in zip(pieces, vectors, strict=True)]
            previous = int(stored.get(document.id, {}).get("chunks", 0))
            actions += [{"_op_type": "delete", "_index": self.index, "_id": f"{document.id}:{n}"} for n in range(len(pieces), previous)]
            self._bulk(actions)
            self._bulk([{"_index": self.documents_index, "_id": document.id, "_source": {"source": document.source, "content_hash": document.content_hash, "chunks": len(pieces)}}])
            report.embedded_chunks += len(pieces)
            if progress:
                progress(len(pieces), total)
        if source is not None:
            gone = [doc_id for doc_id, meta in stored.items() if meta.get("source") == source and doc_id not in incoming]
            for doc_id in gone:
                count = int(stored[doc_id].get("chunks", 0))
                self._bulk([{"_op_type": "delete", "_index": self.index, "_id": f"{doc_id}:{n}"} for n in range(count)])
                self._bulk([{"_op_type": "delete", "_index": self.documents_index, "_id": doc_id}])
            report.removed = sorted(gone)
        with self._calling("refreshing the indices"):
            self.client.indices.refresh(index=f"{self.index},{self.documents_index}")
        report.chunks = self.count()
        return report

    def _chunk_action(self, document: Document, chunk: Any, vector: np.ndarray) -> dict[str, Any]:
        return {
            "_index": self.index,
            "_id": f"{document.id}:{chunk.ordinal}",
            "_source": {
                "text": indexed_text(document, chunk),
                "passage": chunk.text,
                "title": document.title,
                "section": chunk.section,
                "document_id": document.id,
                "source": document.source,
                "product": document.product,
                "category": document.category,
                "updated": document.updated.isoformat() if document.updated else None,
                "start": chunk.start,
                "end": chunk.end,
                "content_hash": document.content_hash,
                "embedding": [float(x) for x in vector],
            },
        }

    def count(self) -> int:
        with self._calling(f"counting {self.index}"):
            return int(self.client.count(index=self.index)["count"]) if self.client.indices.exists(index=self.index) else 0

    # ---- search ---------------------------------------------------------------------------
    def search(self, query: str, filters: dict[str, FilterValue], k: int, mode: str = "hybrid") -> list[Passage]:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r} (known: {', '.join(MODES)})")
        check_filters(filters)
        candidates = max(k, self.config.candidates)
        windows = self.config.windows(query)
        tie = self.config.window_tie_breaker
        if mode == BM25:
            hits = self._hits({"size": k, "query": bm25_query(windows, filters, tie)})
            return [self._passage(hit, hit.score, {BM25: rank}) for rank, hit in enumerate(hits, start=1)]
        vector = query_vector(windows, self.embedder)
        if mode == DENSE:
            hits = self._hits({"size": k, "query": knn_query(vector, filters, candidates)})
            return [self._passage(hit, hit.score, {DENSE: rank}) for rank, hit in enumerate(hits, start=1)]
        if self.native_hybrid:
            body = hybrid_body(windows, vector, filters, k, candidates, tie)
            try:
                hits = self._hits(body, params={"search_pipeline": self.pipeline_for(len(windows))})
            except ClusterError as exc:
                if exc.transient or "(400:" not in str(exc):
                    raise
                log.warning("knowledge.opensearch_hybrid_refused", error=str(exc))  # no neural search, or before 2.19
                self.native_hybrid = False
            else:
                return [self._passage(hit, hit.score, {}) for hit in hits]  # sub-ranks are not reported by the pipeline
        return self._client_side_hybrid(windows, vector, filters, k, candidates)

    def _client_side_hybrid(self, windows: list[str], vector: np.ndarray, filters: dict[str, FilterValue], k: int, candidates: int) -> list[Passage]:
        """Two sub-queries, fused here exactly as the embedded backend fuses."""
        lists = {
            BM25: self._hits({"size": candidates, "query": bm25_query(windows, filters, self.config.window_tie_breaker)}),
            DENSE: self._hits({"size": candidates, "query": knn_query(vector, filters, candidates)}),
        }
        ids = sorted({hit.id for hits in lists.values() for hit in hits})
        position = {doc_id: i for i, doc_id in enumerate(ids)}
        by_id = {hit.id: hit for hits in lists.values() for hit in hits}
        scores = {}
        for name, hits in lists.items():
            column = np.full(len(ids), np.nan)
            for hit in hits:
                column[position[hit.id]] = np.nan if hit.score is None else hit.score
            scores[name] = column
        fused = fuse(self.config.fusion, scores, self.config.weights_for(len(windows)), self.config.rrf_k) if ids else np.zeros(0)
        sub_ranks = {name: ranks(column) for name, column in scores.items()}
        order = np.argsort(-fused, kind="stable")[:k]
        return [self._passage(by_id[ids[i]], float(fused[i]), {name: int(r[i]) or None for name, r in sub_ranks.items()}) for i in order]

    def _hits(self, body: dict[str, Any], params: dict[str, str] | None = None) -> list[_Hit]:
        body.setdefault("_source", {"excludes": ["embedding"]})
        with self._calling(f"search in {self.index}"):
            answer = self.search_client.search(index=self.index, body=body, params=params or {})
        try:
            return _SearchResponse.model_validate(answer).hits.hits
        except ValidationError as exc:
            raise ClusterError(f"OpenSearch at {self.cluster}: the search answer is not a search response ({first_problem(exc)})", transient=False) from None

    @staticmethod
    def _passage(hit: _Hit, score: float | None, sub_ranks: dict[str, int | None]) -> Passage:
        src = hit.source
        return Passage(
            citation_id=citation_id(src.document_id, src.start, src.end),
            document_id=src.document_id,
            title=src.title,
            section=src.section,
            text=src.passage,
            start=src.start,
            end=src.end,
            score=round(float(score or 0.0), 6),
            ranks=sub_ranks,
        )


def _reason(exc: Exception) -> str:
    """opensearch-py's error in one short line: the cluster's error type or text, not a dump."""
    error = getattr(exc, "error", None)
    info = getattr(exc, "info", None)
    if isinstance(info, dict) and isinstance(info.get("error"), dict) and info["error"].get("reason"):
        error = info["error"]["reason"]
    text = " ".join(str(error if error not in (None, "N/A") else (info if isinstance(info, str | Exception) else exc)).split())
    return text[:200] or type(exc).__name__
