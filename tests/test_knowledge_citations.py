"""Every id ingestion accepts can be cited, and the reply's grounding check recognises it."""

from __future__ import annotations

from policies.grounding import check_grounding
from tests.knowledge_support import HashEmbedder
from tools.knowledge.documents import load_documents
from tools.knowledge.embedded import EmbeddedIndex


def test_a_reply_citing_any_ingested_article_is_recognised_as_cited(tmp_path):
    """`refund card timing.md` (id with spaces) and a 150-character id gave uncited replies,
    refused and escalated every time."""
    (tmp_path / "refund card timing.md").write_text(
        "# When will my refund show up on my card\n\nYour refund will show up on your card within 5 to 10 business days."
    )
    (tmp_path / "long.md").write_text(f"---\nid: {'a' * 150}\n---\n# Gift cards\n\nGift cards never expire and can be used online.")
    (tmp_path / "returns.md").write_text("# Returns\n\nReturns are free within 30 days of delivery.")
    documents, _ = load_documents([tmp_path], "hc")
    index = EmbeddedIndex(tmp_path / "kn", HashEmbedder())
    index.ingest(documents, source="hc")
    passages = [p.model_dump() for p in index.search("refund card gift cards returns", {}, 3, mode="bm25")]
    assert len(passages) == 3
    assert {p["citation_id"].split("#")[0] for p in passages} == {"refund-card-timing", "a" * 150, "returns"}
    assert "returns#" in " ".join(p["citation_id"] for p in passages)  # a simple id is cited as before
    for passage in passages:
        reply = f"Here is what our help centre says:\n\n{passage['text']} [{passage['citation_id']}]"
        assert check_grounding(reply, passages, min_support=0.6) == [], passage["citation_id"]
