"""Reading and chunking knowledge documents: formats, metadata, spans, and bad input."""

from __future__ import annotations

import json
import os
from datetime import date

import pytest

from agent.settings import ConfigError, load_settings
from tools.knowledge.chunking import chunk_document, count_tokens
from tools.knowledge.documents import Document, load_documents

ARTICLE = """---
id: kb-refunds
title: Refunds
product: payments
category: billing
updated: 2026-05-02
---
# Refunds

## Timing
Refunds reach the card within five business days. Bank holidays can add a day.

## Partial refunds
A partial refund is issued when only some items come back. The rest of the order stays charged.
"""


def test_markdown_front_matter_becomes_metadata_and_sections_keep_heading_paths(tmp_path):
    (tmp_path / "refunds.md").write_text(ARTICLE)
    [doc], problems = load_documents([tmp_path], "help")
    assert problems == []
    assert (doc.id, doc.title, doc.product, doc.category, doc.updated, doc.source) == (
        "kb-refunds", "Refunds", "payments", "billing", date(2026, 5, 2), "help"
    )
    chunks = chunk_document(doc, max_tokens=300, overlap_tokens=50)
    assert [c.section for c in chunks] == ["Refunds > Timing", "Refunds > Partial refunds"]
    for chunk in chunks:  # the citation span is exactly the passage
        assert doc.text[chunk.start:chunk.end] == chunk.text
        assert chunk.citation_id == f"kb-refunds#{chunk.start}-{chunk.end}"


def test_html_jsonl_and_text_are_read_with_their_ids_and_titles(tmp_path):
    (tmp_path / "page.html").write_text(
        "<html><head><title>Shipping</title><script>var x=1;</script></head>"
        "<body><h1>Shipping</h1><h2>Times</h2><p>Parcels take three days.</p></body></html>"
    )
    (tmp_path / "kb.jsonl").write_text(
        json.dumps({"id": "j1", "title": "Cards", "content": "## Limits\nDaily limit is 500.", "product_line": "cards"}) + "\n"
    )
    (tmp_path / "note.txt").write_text("Opening hours\nWe open at nine.")
    docs, problems = load_documents([tmp_path], "s")
    by_id = {d.id: d for d in docs}
    assert problems == []
    assert by_id["page"].title == "Shipping" and "var x" not in by_id["page"].text
    assert [c.section for c in chunk_document(by_id["page"])] == ["Shipping > Times"]
    assert by_id["j1"].product == "cards" and by_id["j1"].title == "Cards"
    assert by_id["note"].title == "Opening hours"


def test_bad_files_warn_by_name_and_the_rest_still_load(tmp_path):
    (tmp_path / "good.md").write_text("# Ok\n\nFine text.")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02abc")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "empty.md").write_text("   \n")
    (tmp_path / "kb.jsonl").write_text('{"title": "no id", "content": "x"}\nnot json\n{"id": "ok", "content": "Text here."}\n')
    (tmp_path / "bad-date.md").write_text("---\nid: d\nupdated: yesterday\n---\nSome words.")
    docs, problems = load_documents([tmp_path, tmp_path / "missing.md"], "s")
    assert sorted(d.id for d in docs) == ["d", "good", "ok"]
    messages = {p.origin.rsplit("/", 1)[-1]: p.message for p in problems}
    assert "binary" in messages["binary.txt"]
    assert "not UTF-8" in messages["latin1.txt"]
    assert "empty" in messages["empty.md"]
    assert "no id" in messages["kb.jsonl:1"] and "not valid JSON" in messages["kb.jsonl:2"]
    assert "not an ISO date" in messages["bad-date.md"]
    assert "no such file" in messages["missing.md"]


def test_chunks_respect_the_token_bound_overlap_by_whole_sentences_and_never_cut_one():
    sentences = [f"Sentence number {i} talks about topic {i} in some detail here." for i in range(40)]
    doc = Document(id="long", title="Long", text="## Part\n" + " ".join(sentences), source="s")
    chunks = chunk_document(doc, max_tokens=60, overlap_tokens=15)
    assert len(chunks) > 5
    for chunk in chunks:
        assert count_tokens(chunk.text) <= 60
        assert chunk.text.startswith("Sentence number") and chunk.text.endswith(".")
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.start < before.end  # overlap
        assert doc.text[after.start:before.end].strip().endswith(".")  # ... of whole sentences
    covered = " ".join(c.text for c in chunks)
    assert all(s in covered for s in sentences)


def test_text_without_sentence_punctuation_is_cut_at_line_breaks_then_between_words():
    """A 3,000-line list with no full stops was one 150,000-character chunk, quoted whole into a reply."""
    lines = "\n".join(f"zone {i} standard shipping takes {i % 7 + 1} business days" for i in range(3000))
    listed = Document(id="zones", title="Zones", text="How long does shipping take\n" + lines, source="s")
    one_line = Document(id="words", title="Words", text="word " * 700 + "end", source="s")
    for doc in (listed, one_line):
        chunks = chunk_document(doc, max_tokens=300, overlap_tokens=50)
        assert len(chunks) > 2 and max(count_tokens(c.text) for c in chunks) <= 300
        assert all(doc.text[c.start:c.end] == c.text for c in chunks)
        covered = {i for c in chunks for i in range(c.start, c.end)}
        assert all(i in covered for i, char in enumerate(doc.text) if not char.isspace())  # nothing dropped
    assert all(c.text.startswith("zone") or c.start == 0 for c in chunk_document(listed))  # whole lines
    for chunk in chunk_document(one_line, max_tokens=50, overlap_tokens=10):  # cut between words only
        assert one_line.text[chunk.start - 1:chunk.start] in ("", " ") and one_line.text[chunk.end:chunk.end + 1] in ("", " ")


def test_a_single_word_longer_than_the_bound_is_the_only_overflow():
    doc = Document(id="x", title="X", text="Short one. " + "-" * 80 + " Another short one.", source="s")
    assert [count_tokens(c.text) for c in chunk_document(doc, max_tokens=50, overlap_tokens=10)] == [3, 80, 4]


def test_content_hash_changes_with_text_or_metadata_only():
    base = Document(id="a", title="A", text="Text.", source="s", origin="one.md")
    assert base.content_hash == base.model_copy(update={"origin": "two.md"}).content_hash
    assert base.content_hash != base.model_copy(update={"text": "Text!"}).content_hash
    assert base.content_hash != base.model_copy(update={"product": "p"}).content_hash


def test_knowledge_settings_come_from_config_and_env_and_bad_values_are_named():
    settings = load_settings(env={"CASEPLAN__KNOWLEDGE__FUSION": "rrf", "CASEPLAN__KNOWLEDGE__OPENSEARCH__URL": "https://search.example.com:9200"})
    assert settings.knowledge.fusion == "rrf" and settings.knowledge.opensearch.url == "https://search.example.com:9200"
    assert (settings.knowledge.bm25_weight, settings.knowledge.dense_weight) == (0.3, 0.7)
    assert (settings.knowledge.short_bm25_weight, settings.knowledge.short_dense_weight) == (0.2, 0.8)
    assert load_settings(env={"CASEPLAN__KNOWLEDGE__WINDOW_TIE_BREAKER": "0.3"}).knowledge.window_tie_breaker == 0.3
    with pytest.raises(ConfigError, match="window_tie_breaker"):
        load_settings(env={"CASEPLAN__KNOWLEDGE__WINDOW_TIE_BREAKER": "2"})
    with pytest.raises(ConfigError, match="overlap_tokens"):
        load_settings(env={"CASEPLAN__KNOWLEDGE__OVERLAP_TOKENS": "400"})
    with pytest.raises(ConfigError, match="knowledge.fusion"):
        load_settings(env={"CASEPLAN__KNOWLEDGE__FUSION": "average"})


def test_pipes_devices_oversized_lines_and_heading_only_documents_are_reported_not_read(tmp_path, monkeypatch):
    """A FIFO would block the read and /dev/zero never ends: neither is opened. A JSONL line over
    the document bound is skipped on its own; the lines after it still load."""
    from tools.knowledge import documents as loader

    monkeypatch.setattr(loader, "MAX_DOCUMENT_BYTES", 200)
    os.mkfifo(tmp_path / "pipe.md")
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    (tmp_path / "headings.md").write_text("# Only a title\n\n## And a section\n")
    (tmp_path / "big.md").write_text("# Big\n\n" + "word " * 100)
    lines = [json.dumps({"id": "before", "content": "First."}), json.dumps({"id": "huge", "content": "x" * 500}), json.dumps({"id": "after", "content": "Last."})]
    (tmp_path / "kb.jsonl").write_text("\n".join(lines) + "\n")
    docs, problems = load_documents([tmp_path, tmp_path / "zero.txt"], "s")
    assert sorted(d.id for d in docs) == ["after", "before"]
    messages = {p.origin.rsplit("/", 1)[-1]: p.message for p in problems}
    assert messages["pipe.md"] == messages["zero.txt"] == "not a regular file (a pipe, device or socket); skipped"
    assert "has headings but no text under them" in messages["headings.md"]
    assert "larger than 200 bytes" in messages["big.md"]
    assert messages["kb.jsonl:2"] == "line 2 is longer than 200 bytes; skipped"
    assert all(p.lost for p in problems)  # each may hide a document: removals must wait


def test_field_problems_and_unsupported_files_do_not_count_as_lost_documents(tmp_path):
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path / "a.md").write_text("---\nid: a\nupdated: soon\n---\n# A\n\nText.")
    (tmp_path / "b.jsonl").write_text('{"id": "a", "content": "again"}\n')
    docs, problems = load_documents([tmp_path, tmp_path / "notes.pdf"], "s")
    assert [d.id for d in docs] == ["a"] and len(problems) == 3
    assert not any(p.lost for p in problems), problems


def test_ids_a_citation_cannot_hold_are_rewritten_or_refused_with_the_file_named(tmp_path):
    """A reply cites `[<id>#<start>-<end>]`; an id with a space or bracket, or too long, was never
    recognised as cited, so every answer from that article was refused."""
    (tmp_path / "refund card timing.md").write_text("# Refund timing\n\nRefunds reach your card within 5 to 10 business days.")
    (tmp_path / "returns.md").write_text("# Returns\n\nReturns are free.")
    long_id = "x" * 201
    (tmp_path / "kb.jsonl").write_text(json.dumps({"id": "faq [old]", "content": "Old answer."}) + "\n" + json.dumps({"id": long_id, "content": "Long."}) + "\n")
    docs, problems = load_documents([tmp_path], "s")
    assert sorted(d.id for d in docs) == ["faq-old", "refund-card-timing", "returns"]
    messages = {p.origin.rsplit("/", 1)[-1]: p for p in problems}
    assert "'refund card timing' has spaces or brackets" in messages["refund card timing.md"].message
    assert "indexed as 'refund-card-timing'" in messages["refund card timing.md"].message
    assert "indexed as 'faq-old'" in messages["kb.jsonl:1"].message and not messages["kb.jsonl:1"].lost
    assert "longer than 200 characters" in messages["kb.jsonl:2"].message and messages["kb.jsonl:2"].lost


def test_the_source_an_ingest_names_is_every_documents_source(tmp_path):
    """A `source:` field moved a document out of the ingested source, beyond its clean-up."""
    (tmp_path / "promo.md").write_text("---\nsource: legacy\n---\n# Old promo\n\nUse code SUMMER for 50 percent off.")
    (tmp_path / "same.md").write_text("---\nsource: hc\n---\n# Same\n\nNamed as it is ingested.")
    (tmp_path / "kb.jsonl").write_text(json.dumps({"id": "j", "content": "Text.", "source": "elsewhere"}) + "\n")
    docs, problems = load_documents([tmp_path], "hc")
    assert {d.source for d in docs} == {"hc"} and len(docs) == 3
    assert sorted(p.message for p in problems) == [
        "field 'source' ('elsewhere') is not 'hc', the source this ingest names; ignored",
        "field 'source' ('legacy') is not 'hc', the source this ingest names; ignored",
    ]
    assert not any(p.lost for p in problems)


def test_html_inside_markdown_text_and_jsonl_is_removed_as_in_html_pages(tmp_path):
    """Only .html went through tag removal; a <script> in Markdown reached customer replies."""
    attack = '<script>alert("x")</script><img src=x onerror="alert(1)">'
    (tmp_path / "a.md").write_text(f"# Returns {attack}\n\nReturns are free.<br>{attack} See <https://example.com/r?a=1&b=2>.\n\nAT&T &amp; &lt;b&gt; stay.")
    (tmp_path / "b.txt").write_text(f"Shipping\n{attack}Parcels take three days. Write to <help@example.com>.")
    (tmp_path / "c.jsonl").write_text(json.dumps({"id": "c", "title": f"Cards {attack}", "content": f"Limits are 500.{attack}"}) + "\n")
    (tmp_path / "d.html").write_text("<p>Type &lt;script&gt;alert(1)&lt;/script&gt; nowhere.</p>")
    docs, problems = load_documents([tmp_path], "s")
    assert problems == []
    by_id = {d.id: d for d in docs}
    for doc in docs:
        for field in (doc.text, doc.title):
            assert "<script" not in field and "onerror" not in field and "alert" not in field, field
    assert by_id["a"].title == "Returns" and "# Returns" in by_id["a"].text
    assert "See <https://example.com/r?a=1&b=2>." in by_id["a"].text and "AT&T &amp; &lt;b&gt; stay." in by_id["a"].text
    assert by_id["b"].text == "Shipping\nParcels take three days. Write to <help@example.com>."
    assert (by_id["c"].title, by_id["c"].text) == ("Cards", "Limits are 500.")
    assert " ".join(by_id["d"].text.split()) == "Type nowhere."


def test_placeholders_stay_and_tags_with_handlers_or_cut_off_at_the_end_go(tmp_path):
    """An article's `<credit_card_account_id>` means what it says; `<x onmouseover=...>` is a tag a
    browser would run, whatever its name; a tag cut off at the end never reaches the parser."""
    (tmp_path / "p.md").write_text("Call it with <credit_card_account_id> and <timestamp>.\n\n<x onmouseover=alert(1)>hover</x> me <img src=x onerror=alert(1)")
    [doc], _ = load_documents([tmp_path], "s")
    assert "Call it with <credit_card_account_id> and <timestamp>." in doc.text
    assert "onmouseover" not in doc.text and "onerror" not in doc.text and "alert" not in doc.text, doc.text
