"""`caseplan ingest` and `caseplan eval retrieval` as a user runs them."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from agent.cli import app

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
    second = runner.invoke(app, ["ingest", str(docs), "--source", "help", "--json"])
    assert second.exit_code == 0, second.output
    assert '"updated": [\n    "fees"\n  ]' in second.output and '"removed": [\n    "limits"\n  ]' in second.output
    assert '"embedded_chunks": 1' in second.output
    nothing = runner.invoke(app, ["ingest", str(tmp_path / "missing")])
    assert nothing.exit_code == 2 and "no usable documents" in nothing.output


def test_eval_retrieval_refuses_unknown_datasets_and_modes():
    runner = CliRunner()
    bad = runner.invoke(app, ["eval", "retrieval", "--dataset", "nope"])
    assert bad.exit_code == 2 and "--dataset must be one of banking_knowledge, stackfaq" in bad.output
    bad_mode = runner.invoke(app, ["eval", "retrieval", "--dataset", "stackfaq", "--mode", "magic"])
    assert bad_mode.exit_code == 2 and "--mode must be one of" in bad_mode.output
