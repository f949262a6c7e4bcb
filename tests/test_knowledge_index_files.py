"""The embedded index's files shared between processes: ingests run one at a time and each
starts from the last commit, searches pick up another process's commit, and a damaged
generation is named, never read as an empty index and refilled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.knowledge_support import HashEmbedder
from tools.knowledge.documents import Document
from tools.knowledge.embedded import EmbeddedIndex
from tools.knowledge.errors import IndexDamaged

ROOT = Path(__file__).resolve().parents[1]


def docs(source: str, count: int, round_: int = 0) -> list[Document]:
    return [Document(id=f"{source}-{i}", title=f"{source} {i}", text=f"Article {i} of {source}, edition {round_}.", source=source) for i in range(count)]


def test_an_ingest_starts_from_what_another_process_committed(tmp_path):
    first, second = EmbeddedIndex(tmp_path / "kn", HashEmbedder()), EmbeddedIndex(tmp_path / "kn", HashEmbedder())
    first.ingest(docs("alpha", 3), source="alpha")
    second.ingest(docs("beta", 2), source="beta")  # opened before alpha was committed
    assert {d.source for d in EmbeddedIndex(tmp_path / "kn", HashEmbedder()).documents()} == {"alpha", "beta"}
    assert len(EmbeddedIndex(tmp_path / "kn", HashEmbedder()).documents()) == 5


def test_a_search_serves_what_another_process_committed(tmp_path):
    serving = EmbeddedIndex(tmp_path / "kn", HashEmbedder())
    serving.ingest(docs("kb", 2), source="kb")
    EmbeddedIndex(tmp_path / "kn", HashEmbedder()).ingest([Document(id="gift", title="Gift cards", text="Gift cards never expire.", source="faq")], source="faq")
    assert [p.document_id for p in serving.search("gift cards expire", {}, 1, mode="bm25")] == ["gift"]
    assert serving.count() == 3


CHILD = """
import sys
from tests.knowledge_support import HashEmbedder
from tests.test_knowledge_index_files import docs
from tools.knowledge.embedded import EmbeddedIndex
folder, source = sys.argv[1], sys.argv[2]
for round_ in range(6):
    EmbeddedIndex(__import__("pathlib").Path(folder), HashEmbedder()).ingest(docs(source, 40, round_), source=source)
"""


def test_two_processes_ingesting_at_once_both_land_and_the_index_stays_readable(tmp_path):
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "kn"), source], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for source in ("alpha", "beta")
    ]
    for child in children:
        assert child.wait(timeout=300) == 0, child.stderr.read()
    index = EmbeddedIndex(tmp_path / "kn", HashEmbedder())
    assert {source: sum(d.source == source for d in index.documents()) for source in ("alpha", "beta")} == {"alpha": 40, "beta": 40}
    assert all("edition 5" in d.text for d in index.documents())
    assert len(list((tmp_path / "kn").glob("gen-*"))) == 1


def _generation(folder: Path) -> Path:
    return folder / (folder / "CURRENT").read_text().strip()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


DAMAGE = {
    "index.json truncated": (lambda g: _truncate(g / "index.json"), "index.json"),
    "index.json not an object": (lambda g: (g / "index.json").write_text("[]"), "index.json"),
    "vectors.npy deleted": (lambda g: (g / "vectors.npy").unlink(), "vectors.npy"),
    "vectors.npy truncated": (lambda g: _truncate(g / "vectors.npy"), "vectors.npy"),
    "vectors.npy with a row too few": (lambda g: np.save(g / "vectors.npy", np.load(g / "vectors.npy")[:-1]), "vectors.npy"),
    "bm25 folder deleted": (lambda g: __import__("shutil").rmtree(g / "bm25"), "bm25"),
    "a chunk of an unknown document": (
        lambda g: (g / "index.json").write_text(json.dumps({**(m := json.loads((g / "index.json").read_text())), "chunks": [{**m["chunks"][0], "document_id": "ghost"}, *m["chunks"][1:]]})),
        "index.json",
    ),
    "generation folder deleted": (lambda g: __import__("shutil").rmtree(g), "CURRENT"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_generation_is_named_and_not_refilled(tmp_path, damage):
    EmbeddedIndex(tmp_path / "kn", HashEmbedder()).ingest(docs("kb", 3), source="kb")
    serving = EmbeddedIndex(tmp_path / "kn", HashEmbedder())
    harm, named = DAMAGE[damage]
    harm(_generation(tmp_path / "kn"))
    with pytest.raises(IndexDamaged, match=rf"damaged: {named}: .*Move the folder aside"):
        EmbeddedIndex(tmp_path / "kn", HashEmbedder())
    _as_if_committed_elsewhere(tmp_path / "kn" / "CURRENT")
    assert serving.count() == 3  # a process that loaded it before keeps serving what it loaded
    with pytest.raises(IndexDamaged):  # an ingest does not build over it
        serving.ingest(docs("other", 1), source="other")
    assert "other-0" not in (tmp_path / "kn" / "CURRENT").read_text() and len(list((tmp_path / "kn").glob("gen-*"))) <= 1


def _as_if_committed_elsewhere(pointer: Path) -> None:
    """Rename a copy over the pointer: other open indexes see a commit and read the folder again."""
    pointer.with_suffix(".new").write_text(pointer.read_text())
    pointer.with_suffix(".new").replace(pointer)
