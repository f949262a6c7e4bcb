"""The embedded hybrid index with the real MiniLM embedder: search, persistence, incremental
re-ingest, filters, atomic writes, fusion, and the knowledge_search tool's contract."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from pydantic import ValidationError

from tests.knowledge_support import DOCS, CountingEmbedder
from tools.base import ToolContext, ToolError
from tools.contracts.knowledge import DateRange, KnowledgeSearchInput
from tools.knowledge.documents import Document
from tools.knowledge.embedded import EmbeddedIndex
from tools.knowledge.fusion import min_max, reciprocal_rank
from tools.knowledge.tool import KnowledgeSearch

pytestmark = pytest.mark.slow



@pytest.fixture
def index(tmp_path, embedder):
    built = EmbeddedIndex(tmp_path / "kn", embedder)
    built.ingest(DOCS, source="kb")
    return built


def test_hybrid_search_returns_cited_passages_with_each_rankers_rank(index):
    [top, *_] = index.search("how long does standard shipping take", {}, 3)
    assert top.document_id == "ship" and top.section == "Standard"
    assert top.citation_id == f"ship#{top.start}-{top.end}"
    assert DOCS[0].text[top.start:top.end] == top.text
    assert top.ranks == {"bm25": 1, "dense": 1}
    dense_only = index.search("misplaced my mobile with the authenticator", {}, 1, mode="dense")
    assert dense_only[0].document_id == "2fa" and set(dense_only[0].ranks) == {"dense"}


def test_the_index_survives_a_restart_without_embedding_again(index, tmp_path, embedder):
    counting = CountingEmbedder(embedder)
    reopened = EmbeddedIndex(tmp_path / "kn", counting)
    assert reopened.count() == index.count()
    assert [p.citation_id for p in reopened.search("refund card", {}, 2)] == [p.citation_id for p in index.search("refund card", {}, 2)]
    assert len(counting.texts) == 1  # just the query


def test_reingest_embeds_only_changed_documents_and_removes_missing_ones(index, tmp_path, embedder):
    counting = CountingEmbedder(embedder)
    reopened = EmbeddedIndex(tmp_path / "kn", counting)
    changed = DOCS[1].model_copy(update={"text": "## Timing\nRefunds now reach your card within two business days."})
    report = reopened.ingest([DOCS[0], changed, DOCS[2]], source="kb")
    assert report.updated == ["refund"] and report.removed == ["lock"] and report.unchanged == 2 and report.added == []
    assert len(counting.texts) == report.embedded_chunks == 1
    assert {d.id for d in reopened.documents()} == {"ship", "refund", "2fa"}
    assert "two business days" in reopened.search("refund timing", {}, 1)[0].text
    other = reopened.ingest([Document(id="x", title="X", text="Other source text.", source="faq")], source="faq")
    assert other.removed == [] and len(reopened.documents()) == 4  # another source leaves kb alone


def test_a_failed_ingest_leaves_the_previous_index_intact(index, tmp_path, embedder):
    before = [p.citation_id for p in index.search("shipping", {}, 4)]
    failing = EmbeddedIndex(tmp_path / "kn", CountingEmbedder(embedder, fail_after=0))
    new = Document(id="new", title="New", text="Brand new article about gift cards.", source="kb")
    with pytest.raises(RuntimeError):
        failing.ingest([*DOCS, new], source="kb")
    reopened = EmbeddedIndex(tmp_path / "kn", embedder)
    assert [p.citation_id for p in reopened.search("shipping", {}, 4)] == before
    assert "new" not in {d.id for d in reopened.documents()}
    assert len(list((tmp_path / "kn").glob("gen-*"))) == 1


def test_filters_by_equality_set_and_date_range_and_refuse_unknown_fields(index):
    assert {p.document_id for p in index.search("account", {"product": "accounts"}, 10)} == {"2fa", "lock"}
    assert {p.document_id for p in index.search("days", {"product": ["orders", "payments"]}, 10)} == {"ship", "refund"}
    recent = index.search("account card shipping", {"updated": DateRange(gte=date(2026, 2, 1))}, 10)
    assert {p.document_id for p in recent} == {"refund", "2fa"}
    with pytest.raises(ValueError, match="unknown filter field 'colour'"):
        index.search("x", {"colour": "red"}, 3)


def test_tool_contract_refuses_unknown_fields_huge_queries_and_bad_ranges(index):
    tool = KnowledgeSearch(index)
    with pytest.raises(ValidationError, match="colour"):
        KnowledgeSearchInput(query="x", filters={"colour": "red"})
    with pytest.raises(ValidationError, match="at most 4000"):
        KnowledgeSearchInput(query="x" * 100_000)
    with pytest.raises(ValidationError, match="empty"):
        KnowledgeSearchInput(query="x", filters={"updated": {"gte": "2026-05-01", "lte": "2026-01-01"}})
    for loose in ("5", 5.0, True):  # strict like every tool input: a coerced k is a different request
        with pytest.raises(ValidationError, match="valid integer"):
            KnowledgeSearchInput(query="x", k=loose)
    with pytest.raises(ValidationError, match="valid date"):
        KnowledgeSearchInput(query="x", filters={"updated": {"gte": 0}})  # not 1970-01-01
    for bad, words in (({"updated": {"gte": "2026-13-01"}}, "'2026-13-01' is not an ISO date"), ({"product": 5}, "a filter value is a string, a list")):
        with pytest.raises(ValidationError) as refused:
            KnowledgeSearchInput(query="x", filters=bad)
        assert refused.value.error_count() == 1 and words in str(refused.value)  # the cause, not three union branches
    args = KnowledgeSearchInput(query="backup code lost phone", filters={"updated": {"gte": "2026-06-01"}}, k=2)
    output = tool.invoke(args, ToolContext(run_id="r", step_id="s", idempotency_key="k"))
    assert [p.document_id for p in output.passages] == ["2fa"] and output.backend == "embedded"
    with pytest.raises(ToolError) as raised:
        tool.invoke(KnowledgeSearchInput.model_construct(query="x", filters={"colour": "red"}, k=1), ToolContext(run_id="r", step_id="s", idempotency_key="k"))
    assert raised.value.kind == "permanent" and "colour" in raised.value.message


def test_fusion_formulas():
    bm25 = np.array([10.0, 5.0, np.nan])
    dense = np.array([0.2, 0.9, 0.5])
    rrf = reciprocal_rank({"bm25": bm25, "dense": dense}, {}, k=60)
    assert rrf == pytest.approx([1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 62])
    fused = min_max({"bm25": bm25, "dense": dense}, {"bm25": 0.4, "dense": 0.6})
    assert fused == pytest.approx([0.4 * 1 + 0.6 * 0, 0.4 * 0 + 0.6 * 1, 0.6 * (0.3 / 0.7)])
