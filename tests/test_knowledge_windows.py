"""Long queries: BM25 per query window combined like `dis_max`, and fusion weights by query length.

A customer's story names many things; the article for the one thing a single sentence names
must not be outvoted by an article that matches a word from every other sentence.
"""

from __future__ import annotations

import numpy as np
import pytest

from tools.knowledge.documents import Document
from tools.knowledge.embedded import EmbeddedIndex
from tools.knowledge.lexical import Bm25
from tools.knowledge.opensearch import OpenSearchIndex, bm25_query, hybrid_body, pipeline_body
from tools.knowledge.ranking import RankingConfig

TEXTS = {
    "card": "Card statement: purchases, payments, rewards, fees and limits explained.",
    "overdraft": "Overdraft protection moves money from savings to cover a shortfall.",
    "mortgage": "Mortgage rates and terms.",
    "travel": "Travel insurance claims.",
    "branch": "Branch opening hours.",
    "replace": "Card replacement shipping.",
}
STORY = (
    "I got my card last month. My statement arrived on Monday. I made purchases abroad. I made payments on time. "
    "I earn rewards too. The fees puzzled me. I hit my limits once. What about overdraft protection?"
)
SMALL_WINDOWS = RankingConfig(query_window_tokens=8)  # one sentence per window in STORY
DOCUMENTS = [Document(id=key, title=key, text=text, source="kb") for key, text in TEXTS.items()]


def test_one_sentence_finds_its_article_when_windows_are_scored_apart():
    bm25 = Bm25.build(list(TEXTS.values()))
    windows = SMALL_WINDOWS.windows(STORY)
    assert len(windows) == 8
    whole = bm25.scores(STORY)
    per_window = bm25.dis_max_scores(windows, tie_breaker=0.1)
    names = list(TEXTS)
    assert names[int(np.argmax(whole))] == "card"  # the whole story: a word from every sentence wins
    assert names[int(np.argmax(per_window))] == "overdraft"
    card, overdraft = names.index("card"), names.index("overdraft")
    # dis_max arithmetic: the card article's best window plus 0.1 x its other windows
    singles = np.stack([bm25.scores(w) for w in windows])
    assert per_window[card] == pytest.approx(singles[:, card].max() + 0.1 * (singles[:, card].sum() - singles[:, card].max()))
    assert per_window[overdraft] == pytest.approx(singles[:, overdraft].max())
    assert bm25.dis_max_scores(["overdraft protection"], 0.1) == pytest.approx(bm25.scores("overdraft protection"))


@pytest.mark.slow
def test_the_embedded_index_surfaces_the_article_one_sentence_of_a_long_query_names(tmp_path, embedder):
    index = EmbeddedIndex(tmp_path / "kn", embedder, SMALL_WINDOWS)
    index.ingest(DOCUMENTS, source="kb")
    assert index.search(STORY, {}, 1, mode="bm25")[0].document_id == "overdraft"
    assert "overdraft" in {p.document_id for p in index.search(STORY, {}, 2)}
    assert [doc for doc, _ in index.search_documents(STORY, 1, mode="bm25")] == ["overdraft"]


def test_fusion_weights_follow_the_query_length():
    config = RankingConfig(weights={"bm25": 0.3, "dense": 0.7}, short_weights={"bm25": 0.2, "dense": 0.8})
    assert config.weights_for(len(config.windows("How long does shipping take?"))) == {"bm25": 0.2, "dense": 0.8}
    assert config.weights_for(len(SMALL_WINDOWS.windows(STORY))) == {"bm25": 0.3, "dense": 0.7}
    assert config.windows("") == [""]


# ---- OpenSearch: the same windows as a dis_max of match clauses (documented query DSL) --------
def test_bm25_query_of_several_windows_is_a_dis_max_of_match_clauses():
    body = bm25_query(["lost card", "overdraft protection"], {"product": "cards"}, tie_breaker=0.1)
    assert body == {
        "bool": {
            "must": [
                {
                    "dis_max": {
                        "queries": [{"match": {"text": {"query": "lost card"}}}, {"match": {"text": {"query": "overdraft protection"}}}],
                        "tie_breaker": 0.1,
                    }
                }
            ],
            "filter": [{"term": {"product": "cards"}}],
        }
    }
    assert bm25_query(["refund"], {}, 0.1) == bm25_query("refund", {})
    hybrid = hybrid_body(["a b", "c d"], [0.5], {}, k=3, candidates=10, tie_breaker=0.1)
    assert "dis_max" in hybrid["query"]["hybrid"]["queries"][0]["bool"]["must"][0]


def test_short_queries_get_their_own_pipeline_weights():
    config = RankingConfig(weights={"bm25": 0.3, "dense": 0.7}, short_weights={"bm25": 0.2, "dense": 0.8})
    long_weights = pipeline_body(config)["phase_results_processors"][0]["normalization-processor"]["combination"]["parameters"]["weights"]
    short_weights = pipeline_body(config, config.short_weights)["phase_results_processors"][0]["normalization-processor"]["combination"]["parameters"]["weights"]
    assert long_weights == pytest.approx([0.3, 0.7]) and short_weights == pytest.approx([0.2, 0.8])
    backend = OpenSearchIndex(client=None, index="kb", embedder=None, config=config, pipeline="caseplan-hybrid")  # type: ignore[arg-type]
    assert (backend.pipeline_for(1), backend.pipeline_for(3)) == ("caseplan-hybrid-short", "caseplan-hybrid")


@pytest.mark.slow
def test_opensearch_bm25_scores_a_long_query_window_by_window(osmem_clone, embedder):
    from opensearchpy import OpenSearch

    client = OpenSearch(hosts=[osmem_clone.url], timeout=10)
    backend = OpenSearchIndex(client, "caseplan-test-windows", embedder, SMALL_WINDOWS)
    try:
        backend.ingest(DOCUMENTS, source="kb")
        assert backend.search(STORY, {}, 1, mode="bm25")[0].document_id == "overdraft"  # osmem has no k-NN: BM25 only
    finally:
        client.indices.delete(index="caseplan-test-windows,caseplan-test-windows-documents", ignore_unavailable=True)
