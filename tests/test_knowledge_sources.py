"""Which source a document belongs to: an id stays with the source that has it, the source an
ingest names is every document's source, and the demo articles make way for a team's own."""

from __future__ import annotations

from agent.tooling import DEMO_KB
from tests.knowledge_support import HashEmbedder
from tools.knowledge.documents import Document, load_documents
from tools.knowledge.embedded import DEMO_SOURCE, EmbeddedIndex


def returns(source: str, text: str) -> Document:
    return Document(id="returns", title="Returns", text=text, source=source, origin=f"{source}/returns.md")


def test_an_id_another_source_has_is_refused_and_its_article_never_removed(tmp_path):
    """Store B's returns.md replaced store A's article ("1 updated"), and B's next clean ingest deleted it."""
    index = EmbeddedIndex(tmp_path / "kn", HashEmbedder())
    index.ingest([returns("storeA", "Store A accepts returns within 30 days.")], source="storeA")
    other = Document(id="b2", title="B2", text="Other text.", source="marketB", origin="marketB/b2.md")
    report = index.ingest([returns("marketB", "Marketplace B accepts returns within 14 days only."), other], source="marketB")
    assert (report.added, report.updated) == (["b2"], [])
    [refused] = report.refused
    assert refused.origin == "marketB/returns.md"
    assert refused.message == "document id 'returns' belongs to source 'storeA'; skipped (give this document another id)"
    cleaned = index.ingest([other], source="marketB")  # B's returns.md is deleted
    assert cleaned.removed == []
    kept = {d.id: d for d in EmbeddedIndex(tmp_path / "kn", HashEmbedder()).documents()}
    assert (kept["returns"].source, kept["returns"].text) == ("storeA", "Store A accepts returns within 30 days.")


def test_a_deleted_file_whose_front_matter_names_another_source_is_removed_with_its_source(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "promo.md").write_text("---\nsource: legacy\n---\n# Old promo\n\nUse code SUMMER for 50 percent off.")
    (docs / "keep.md").write_text("# Keep\n\nKeep this.")
    index = EmbeddedIndex(tmp_path / "kn", HashEmbedder())
    index.ingest(load_documents([docs], "hc")[0], source="hc")
    (docs / "promo.md").unlink()
    assert index.ingest(load_documents([docs], "hc")[0], source="hc").removed == ["promo"]
    assert [d.id for d in index.documents()] == ["keep"]


def test_the_demo_articles_make_way_for_a_teams_own_source(tmp_path):
    """A fresh data folder is seeded with the demo articles; they were then served next to the
    team's own policy (refund and return rules of a store that does not exist)."""
    demo, _ = load_documents([DEMO_KB], DEMO_SOURCE)
    index = EmbeddedIndex(tmp_path / "kn", HashEmbedder())
    index.ingest(demo, source=DEMO_SOURCE)
    assert index.ingest(demo, source=DEMO_SOURCE).removed == []  # re-seeding keeps them
    own = [Document(id="refunds", title="Refunds", text="Refunds take 3 days.", source="hc")]
    report = index.ingest(own, source=None)  # also when removals are held
    assert report.removed == sorted(d.id for d in demo) and report.added == ["refunds"] and report.refused == []
    assert [(d.id, d.source) for d in EmbeddedIndex(tmp_path / "kn", HashEmbedder()).documents()] == [("refunds", "hc")]
