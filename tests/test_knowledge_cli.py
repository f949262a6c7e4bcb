"""`caseplan ingest` and `caseplan eval retrieval` as a user runs them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agent.cli import app
from tools.embeddings import SentenceTransformerEmbedder
from tools.knowledge.embedded import EmbeddedIndex

pytestmark = pytest.mark.slow


def test_ingest_warns_about_bad_files_continues_and_reingests_incrementally(tmp_path, monkeypatch):
    monkeypatch.setenv("CASEPLAN_DATA_DIR", str(tmp_path / "data"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "fees.md").write_text("---\nid: fees\nproduct: cards\n---\n# Fees\n\n## Annual fee\nThe Gold card has no annual fee.")
    (docs / "broken.txt").write_bytes(b"\x00\x00binary")
    (docs / "kb.jsonl").write_text('{"title": "no id", "content": "x"}\n{"id": "limits", "title": "Limits", "content": "Daily ATM limit is 500."}\n')
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(docs), "--source", "help"])
    assert first.exit_code == 0, first.output
    assert "broken.txt: cannot read: binary file" in first.output and "kb.jsonl:1: document has no id" in first.output
    assert "2 added" in first.output
    (docs / "fees.md").write_text("---\nid: fees\nproduct: cards\n---\n# Fees\n\n## Annual fee\nThe Gold card costs 95 a year.")
    (docs / "kb.jsonl").unlink()
    # broken.txt still cannot be read, so the source is incomplete: nothing is taken as deleted
    second = runner.invoke(app, ["ingest", str(docs), "--source", "help", "--json"])
    assert second.exit_code == 0, second.output
    assert '"updated": [\n    "fees"\n  ]' in second.output and '"removed": []' in second.output
    assert '"embedded_chunks": 1' in second.output and '"removals_held": true' in second.output
    assert "missing from PATHs were kept, not removed" in second.output
    (docs / "broken.txt").unlink()
    third = runner.invoke(app, ["ingest", str(docs), "--source", "help", "--json"])
    assert third.exit_code == 0, third.output
    assert '"removed": [\n    "limits"\n  ]' in third.output and '"removals_held": false' in third.output
    nothing = runner.invoke(app, ["ingest", str(tmp_path / "missing")])
    assert nothing.exit_code == 2 and "no usable documents" in nothing.output


def test_a_teams_first_ingest_leaves_out_the_demo_articles_and_warns_of_a_taken_id(tmp_path, monkeypatch):
    """The first ingest into a fresh data folder seeded the demo articles beside the team's own."""
    monkeypatch.setenv("CASEPLAN_DATA_DIR", str(tmp_path / "data"))
    store, market = tmp_path / "A", tmp_path / "B"
    store.mkdir(), market.mkdir()
    (store / "returns.md").write_text("# Returns A\n\nStore A accepts returns within 30 days.")
    (market / "returns.md").write_text("# Returns B\n\nMarketplace B accepts returns within 14 days only.")
    (market / "b2.md").write_text("# B2\n\nOther text.")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(store), "--source", "storeA"]).exit_code == 0
    assert {d.source for d in _indexed(tmp_path / "data")} == {"storeA"}
    taken = runner.invoke(app, ["ingest", str(market), "--source", "marketB"])
    assert taken.exit_code == 0, taken.output
    assert f"warning: {market / 'returns.md'}: document id 'returns' belongs to source 'storeA'; skipped" in taken.stderr
    assert "1 warnings" in taken.stdout
    assert {(d.id, d.source) for d in _indexed(tmp_path / "data")} == {("returns", "storeA"), ("b2", "marketB")}


def test_eval_retrieval_refuses_unknown_datasets_and_modes():
    runner = CliRunner()
    bad = runner.invoke(app, ["eval", "retrieval", "--dataset", "nope"])
    assert bad.exit_code == 2 and "--dataset must be one of banking_knowledge, stackfaq" in bad.output
    bad_mode = runner.invoke(app, ["eval", "retrieval", "--dataset", "stackfaq", "--mode", "magic"])
    assert bad_mode.exit_code == 2 and "--mode must be one of" in bad_mode.output


def test_a_file_that_turns_unreadable_keeps_its_documents_until_it_reads_again(tmp_path, monkeypatch):
    """Bad input loses nothing stored: a corrupted file or a broken JSONL line is not a deletion."""
    monkeypatch.setenv("CASEPLAN_DATA_DIR", str(tmp_path / "data"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "returns.md").write_text("# Returns\n\nReturns are free within 30 days.")
    (docs / "kb.jsonl").write_text('{"id": "j1", "content": "Card limits are 500."}\n{"id": "j2", "content": "Cards expire after three years."}\n')
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(docs), "--source", "kb"]).exit_code == 0
    (docs / "returns.md").write_bytes(b"\x00\x01 corrupted")
    (docs / "kb.jsonl").write_text('{"id": "j1", "content": "Card limits are 500."}\n{"id": "j2", "content": "Cards expire\n')
    damaged = runner.invoke(app, ["ingest", str(docs), "--source", "kb", "--json"])
    assert damaged.exit_code == 0, damaged.output
    assert '"removed": []' in damaged.output and '"unchanged": 1' in damaged.output
    assert {"j1", "j2", "returns"} <= _indexed_ids(tmp_path / "data")
    (docs / "returns.md").unlink()
    (docs / "kb.jsonl").write_text('{"id": "j1", "content": "Card limits are 500."}\n')
    clean = runner.invoke(app, ["ingest", str(docs), "--source", "kb", "--json"])
    assert '"removed": [\n    "j2",\n    "returns"\n  ]' in clean.output, clean.output
    assert not {"j2", "returns"} & _indexed_ids(tmp_path / "data")


def _indexed(data_dir):
    return EmbeddedIndex(data_dir / "knowledge", SentenceTransformerEmbedder()).documents()


def _indexed_ids(data_dir):
    return {document.id for document in _indexed(data_dir)}


def test_a_damaged_index_is_one_error_line_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("CASEPLAN_DATA_DIR", str(tmp_path / "data"))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "returns.md").write_text("# Returns\n\nReturns are free within 30 days.")
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", str(docs), "--source", "kb"]).exit_code == 0
    folder = tmp_path / "data" / "knowledge"
    generation = folder / (folder / "CURRENT").read_text().strip()
    (generation / "vectors.npy").write_bytes(b"\x93NUMPY truncated")
    damaged = runner.invoke(app, ["ingest", str(docs), "--source", "kb"])
    assert damaged.exit_code == 2 and "Traceback" not in damaged.output
    assert f"error: the knowledge index in {folder} is damaged: vectors.npy:" in damaged.output
    assert [p.name for p in folder.glob("gen-*")] == [generation.name]  # not refilled with the demo articles
