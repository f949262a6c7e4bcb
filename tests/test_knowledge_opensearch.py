"""The OpenSearch backend.

- Against osmem-server (an OpenSearch-compatible test server on loopback, no k-NN, no search
  pipelines): index management, bulk ingestion, incremental re-ingest, BM25 and filters.
- Contract tests: the k-NN, hybrid and search-pipeline request bodies match OpenSearch's
  documented DSL (docs.opensearch.org: hybrid query, k-NN efficient filtering,
  normalization-processor, score-ranker-processor).
- `-m opensearch` with OPENSEARCH_URL set: the whole suite, k-NN and native hybrid included,
  against a real cluster.
"""

from __future__ import annotations

import os
from datetime import date

import pytest
from opensearchpy import OpenSearch

from tests.knowledge_support import DOCS, CountingEmbedder, HashEmbedder
from tools.contracts.knowledge import DateRange
from tools.knowledge.documents import Document
from tools.knowledge.opensearch import (
    OpenSearchIndex,
    bm25_query,
    filter_clauses,
    hybrid_body,
    index_body,
    knn_query,
    pipeline_body,
)
from tools.knowledge.opensearch_transport import BoundedHttpxConnection
from tools.knowledge.ranking import RankingConfig

OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL")
real_cluster = pytest.mark.skipif(not OPENSEARCH_URL, reason="OPENSEARCH_URL is not set: no real OpenSearch cluster to test against")


@pytest.fixture(params=["osmem", pytest.param("cluster", marks=[pytest.mark.opensearch, real_cluster])])
def client(request) -> OpenSearch:
    if request.param == "osmem":
        clone = request.getfixturevalue("osmem_clone")
        return OpenSearch(hosts=[clone.url], timeout=10, connection_class=BoundedHttpxConnection)
    return OpenSearch(hosts=[OPENSEARCH_URL], timeout=30, verify_certs=False, connection_class=BoundedHttpxConnection)


@pytest.fixture
def backend(client, embedder, request) -> OpenSearchIndex:
    name = f"caseplan-test-{abs(hash(request.node.name)) % 10**8}"
    index = OpenSearchIndex(client, name, embedder)
    yield index
    client.indices.delete(index=f"{name},{name}-documents", ignore_unavailable=True)


def is_osmem(client: OpenSearch) -> bool:
    return client.info()["version"].get("build_hash") == "osmem"


@pytest.mark.slow
def test_index_is_created_once_with_the_explicit_mapping(backend):
    assert backend.ensure_index() is True
    assert backend.ensure_index() is False
    mapping = backend.client.indices.get_mapping(index=backend.index)[backend.index]["mappings"]["properties"]
    assert mapping["text"] == {"type": "text", "analyzer": "english"}
    assert mapping["embedding"]["type"] == "knn_vector" and mapping["embedding"]["dimension"] == 384
    assert mapping["embedding"]["method"]["name"] == "hnsw"
    assert mapping["product"]["type"] == "keyword" and mapping["updated"]["type"] == "date"


@pytest.mark.slow
def test_bulk_ingest_is_incremental_and_removes_missing_documents(backend, embedder):
    first = backend.ingest(DOCS, source="kb")
    assert sorted(first.added) == sorted(d.id for d in DOCS) and first.chunks == 4
    counting = CountingEmbedder(embedder)
    backend.embedder = counting
    changed = DOCS[1].model_copy(update={"text": "## Timing\nRefunds now take two business days."})
    again = backend.ingest([DOCS[0], changed, DOCS[2]], source="kb")
    assert again.updated == ["refund"] and again.removed == ["lock"] and again.unchanged == 2
    assert len(counting.texts) == again.embedded_chunks == 1
    assert backend.count() == 3
    [top] = backend.search("refund timing", {}, 1, mode="bm25")
    assert top.document_id == "refund" and "two business days" in top.text
    assert top.citation_id == f"refund#{top.start}-{top.end}" and changed.text[top.start:top.end] == top.text


@pytest.mark.slow
def test_bm25_search_applies_equality_set_and_date_filters(backend):
    backend.ingest(DOCS, source="kb")
    hits = backend.search("account sign", {"product": "accounts"}, 10, mode="bm25")
    assert {p.document_id for p in hits} <= {"2fa", "lock"} and hits
    hits = backend.search("business days", {"product": ["orders", "payments"]}, 10, mode="bm25")
    assert {p.document_id for p in hits} == {"ship", "refund"}
    hits = backend.search("business days", {"updated": DateRange(gte=date(2026, 2, 1))}, 10, mode="bm25")
    assert {p.document_id for p in hits} == {"refund"}
    assert hits[0].ranks == {"bm25": 1}
    with pytest.raises(ValueError, match="unknown filter field 'colour'"):
        backend.search("x", {"colour": "red"}, 3)


@pytest.mark.slow
def test_pipeline_setup_is_idempotent_or_falls_back_to_client_side_fusion(backend):
    backend.ensure_index()
    if is_osmem(backend.client):  # no search pipelines there: hybrid must fuse client-side
        assert backend.ensure_pipeline() is False and backend.native_hybrid is False
        return
    assert backend.ensure_pipeline() is True and backend.ensure_pipeline() is True
    stored = backend.client.transport.perform_request("GET", f"/_search/pipeline/{backend.pipeline}")[backend.pipeline]
    assert stored["phase_results_processors"] == pipeline_body(backend.config)["phase_results_processors"]


@pytest.mark.opensearch
@real_cluster
@pytest.mark.slow
@pytest.mark.parametrize("native", [True, False])
def test_hybrid_and_dense_search_on_a_real_cluster(embedder, native):
    client = OpenSearch(hosts=[OPENSEARCH_URL], timeout=30, verify_certs=False)
    backend = OpenSearchIndex(client, f"caseplan-test-hybrid-{native}", embedder, native_hybrid=native)
    try:
        backend.ensure_index()
        backend.ensure_pipeline()
        backend.ingest(DOCS, source="kb")
        assert backend.search("misplaced my mobile with the authenticator", {}, 1, mode="dense")[0].document_id == "2fa"
        hits = backend.search("how long does standard shipping take", {"product": "orders"}, 3)
        assert [p.document_id for p in hits] == ["ship"]
    finally:
        client.indices.delete(index=f"{backend.index},{backend.index}-documents", ignore_unavailable=True)


# ---- contract tests of the request bodies against the documented DSL -------------------------
def test_knn_query_puts_the_filter_inside_the_clause():
    body = knn_query([0.1, 0.2], {"product": "cards", "updated": DateRange(lte=date(2026, 1, 31))}, 50)
    assert body == {
        "knn": {
            "embedding": {
                "vector": [0.1, 0.2],
                "k": 50,
                "filter": {"bool": {"filter": [{"term": {"product": "cards"}}, {"range": {"updated": {"lte": "2026-01-31"}}}]}},
            }
        }
    }
    assert "filter" not in knn_query([0.1], {}, 5)["knn"]["embedding"]


def test_hybrid_body_has_a_bm25_and_a_knn_sub_query_with_the_same_filters():
    body = hybrid_body("refund", [0.5], {"source": ["a", "b"]}, k=5, candidates=100)
    queries = body["query"]["hybrid"]["queries"]
    assert body["size"] == 5 and len(queries) == 2
    assert queries[0] == {"bool": {"must": [{"match": {"text": {"query": "refund"}}}], "filter": [{"terms": {"source": ["a", "b"]}}]}}
    assert queries[1]["knn"]["embedding"]["filter"] == {"bool": {"filter": [{"terms": {"source": ["a", "b"]}}]}}
    assert queries[0] == bm25_query("refund", {"source": ["a", "b"]})


def test_pipeline_bodies_follow_the_normalization_and_score_ranker_processor_docs():
    normalization = pipeline_body(RankingConfig(fusion="min_max", weights={"bm25": 0.4, "dense": 0.6}))
    assert normalization["phase_results_processors"] == [
        {
            "normalization-processor": {
                "normalization": {"technique": "min_max"},
                "combination": {"technique": "arithmetic_mean", "parameters": {"weights": [0.4, 0.6]}},
            }
        }
    ]
    rrf = pipeline_body(RankingConfig(fusion="rrf", rrf_k=60))
    assert rrf["phase_results_processors"] == [{"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}]


def test_index_body_and_filters():
    body = index_body(384)
    assert body["settings"]["index"]["knn"] is True
    vector = body["mappings"]["properties"]["embedding"]
    assert vector["method"] == {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene", "parameters": {"m": 16, "ef_construction": 128}}
    assert filter_clauses({}) == []
    with pytest.raises(ValueError, match="'updated'"):
        filter_clauses({"updated": "2026-01-01"})


@pytest.mark.slow
def test_reingest_reads_every_stored_record_past_one_page(client, monkeypatch, request):
    """The stored-document records are scrolled page by page; one capped search (10,000) made
    a large corpus re-embed its tail and never remove its deleted documents."""
    monkeypatch.setattr("tools.knowledge.opensearch.SCAN_PAGE", 4)
    name = f"caseplan-test-pages-{abs(hash(request.node.name)) % 10**8}"
    backend = OpenSearchIndex(client, name, HashEmbedder())
    try:
        docs = [Document(id=f"d{i}", title=f"D{i}", text=f"Article number {i}.", source="kb") for i in range(11)]
        assert len(backend.ingest(docs, source="kb").added) == 11
        again = backend.ingest(docs, source="kb")
        assert (again.unchanged, again.added, again.embedded_chunks) == (11, [], 0)
        fewer = backend.ingest(docs[:3], source="kb")
        assert fewer.removed == sorted(f"d{i}" for i in range(3, 11)) and fewer.chunks == 3
    finally:
        client.indices.delete(index=f"{name},{name}-documents", ignore_unavailable=True)


@pytest.mark.slow
def test_an_id_another_source_has_is_refused_and_never_removed(client, request):
    name = f"caseplan-test-owner-{abs(hash(request.node.name)) % 10**8}"
    backend = OpenSearchIndex(client, name, HashEmbedder())
    try:
        backend.ingest([Document(id="returns", title="A", text="Store A takes returns for 30 days.", source="storeA")], source="storeA")
        taken = Document(id="returns", title="B", text="Marketplace B takes returns for 14 days.", source="marketB", origin="B/returns.md")
        report = backend.ingest([taken], source="marketB")
        assert report.added == report.updated == [] and [p.origin for p in report.refused] == ["B/returns.md"]
        assert backend.ingest([Document(id="b2", title="B2", text="Other.", source="marketB")], source="marketB").removed == []
        [hit] = backend.search("returns", {"document_id": "returns"}, 1, mode="bm25")
        assert "30 days" in hit.text
    finally:
        client.indices.delete(index=f"{name},{name}-documents", ignore_unavailable=True)
