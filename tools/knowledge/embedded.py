"""The embedded knowledge index: BM25 + exact dense vectors + metadata filters, on local disk.

Each ingest writes a complete new generation folder (chunks, vectors, BM25) and then
switches the `CURRENT` pointer with one atomic rename, so a failed or interrupted ingest
leaves the previous index untouched. Unchanged documents (same content hash) keep their
chunks and vectors; only new or changed ones are chunked and embedded again.

Ingests take a lock file, so two at once (two `caseplan ingest` processes) run one after the
other, the second starting from what the first committed. A search notices a newer `CURRENT`
(an ingest by another process) and loads it, so a running service serves what was ingested
without a restart. A generation that cannot be read as written is `IndexDamaged`, naming the
file, never an empty index quietly refilled.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from pydantic import BaseModel, ValidationError

from tools.contracts.knowledge import FilterValue, Passage
from tools.embeddings import Embedder
from tools.file_lock import exclusive
from tools.knowledge.chunking import Chunk, chunk_document, indexed_text
from tools.knowledge.documents import Document, LoadProblem
from tools.knowledge.errors import IndexDamaged
from tools.knowledge.filters import MetadataColumns
from tools.knowledge.lexical import Bm25
from tools.knowledge.ranking import RankingConfig, fuse_rows, group_max, rank_rows, ranker_scores

log = structlog.get_logger(__name__)
FORMAT = 1
# The demo articles a fresh data folder is seeded with (`agent/tooling.py`) are this source's: they
# stand in for a knowledge base until a team ingests its own, and are never served next to it.
DEMO_SOURCE = "demo"
LOAD_ATTEMPTS = 3  # a generation replaced while it is read is read again from the new pointer
# What reading a generation raises when its files are missing, truncated or altered.
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, IndexError)


class IngestReport(BaseModel):
    added: list[str] = []
    updated: list[str] = []
    unchanged: int = 0
    removed: list[str] = []
    refused: list[LoadProblem] = []  # documents whose id another source has
    chunks: int = 0
    embedded_chunks: int = 0


def claim(documents: Sequence[Document], owners: Mapping[str, str]) -> tuple[list[Document], list[LoadProblem]]:
    """The documents whose id is free or their own source's (`owners`: stored id -> source), and
    a warning for each other one.

    A citation names a document by its id alone, so ids are global and an id stays with the
    source that has it: taken over, the other source's article would be replaced without a
    word, then deleted by this source's next clean ingest. (Ids per source would need the
    source in every citation and stored record.) To move a document, drop it from its source first."""
    accepted: list[Document] = []
    refused: list[LoadProblem] = []
    for document in documents:
        owner = owners.get(document.id, document.source)
        if owner == document.source:
            accepted.append(document)
            continue
        message = f"document id {document.id!r} belongs to source {owner!r}; skipped (give this document another id)"
        refused.append(LoadProblem(origin=document.origin, message=message))
    return accepted, refused


@dataclass
class _State:
    documents: list[Document] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    chunks: list[Chunk] = field(default_factory=list)
    chunk_doc: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    bm25: Bm25 | None = None
    columns: MetadataColumns = field(default_factory=lambda: MetadataColumns([]))


class EmbeddedIndex:
    """Hybrid search over one folder; safe to share between threads (searches read a snapshot)."""

    backend_name = "embedded"
    in_process = True

    def __init__(self, folder: Path, embedder: Embedder, config: RankingConfig | None = None, chunk_tokens: int = 300, overlap_tokens: int = 50) -> None:
        self.folder = folder
        self.embedder = embedder
        self.config = config or RankingConfig()
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self._reload_lock = threading.Lock()
        # The pointer of the state in memory, and the last pointer a search tried to load
        # (they differ while the newest commit cannot be read).
        self._loaded = self._seen = self._pointer_stamp()
        self._state = self._load()

    # ---- reading -------------------------------------------------------------------------
    def _pointer_stamp(self) -> tuple[int, int] | None:
        """Identifies the `CURRENT` file: each commit renames a new file over it."""
        try:
            found = (self.folder / "CURRENT").stat()
        except FileNotFoundError:
            return None
        return found.st_ino, found.st_mtime_ns

    def _load(self) -> _State:
        """The committed generation; read again if an ingest replaces it meanwhile."""
        for attempt in range(LOAD_ATTEMPTS):
            stamp = self._pointer_stamp()
            try:
                return self._read_generation()
            except IndexDamaged:
                if attempt + 1 == LOAD_ATTEMPTS or self._pointer_stamp() == stamp:
                    raise
        raise AssertionError("unreachable")  # the loop returns or raises

    def _read_generation(self) -> _State:
        pointer = self.folder / "CURRENT"
        try:
            name = pointer.read_text().strip()
        except FileNotFoundError:
            return _State()  # nothing ingested yet
        except _UNREADABLE as exc:
            raise self._damaged(pointer, exc) from None
        generation = self.folder / name
        if not name.startswith("gen-") or not generation.is_dir():
            raise self._damaged(pointer, f"it names {name[:80]!r}, which is not a generation folder here")
        try:
            meta = json.loads((generation / "index.json").read_text())
        except _UNREADABLE as exc:
            raise self._damaged(generation / "index.json", exc) from None
        if not isinstance(meta, dict):
            raise self._damaged(generation / "index.json", "not a JSON object")
        if meta.get("format") != FORMAT or meta.get("model_id") != self.embedder.model_id:
            log.warning("knowledge.index_incompatible", folder=str(generation), model=meta.get("model_id"))
            return _State()
        try:
            documents = [Document.model_validate(d) for d in meta["documents"]]
            chunks = [Chunk(**c) for c in meta["chunks"]]
            hashes = [str(h) for h in meta["hashes"]]
            by_id = {d.id: i for i, d in enumerate(documents)}
            chunk_doc = np.array([by_id[c.document_id] for c in chunks], dtype=np.int32)
        except (*_UNREADABLE, ValidationError) as exc:
            raise self._damaged(generation / "index.json", exc) from None
        if len(hashes) != len(documents):
            raise self._damaged(generation / "index.json", f"{len(hashes)} content hashes for {len(documents)} documents")
        vectors = self._read_part(generation / "vectors.npy", np.load)
        if vectors.shape != (len(chunks), self.embedder.dim) or vectors.dtype != np.float32:
            expected = f"float32 ({len(chunks)}, {self.embedder.dim})"
            raise self._damaged(generation / "vectors.npy", f"{vectors.dtype} {vectors.shape}, expected {expected}")
        bm25 = self._read_part(generation / "bm25", lambda path: Bm25.load(path, len(chunks))) if chunks else None
        if bm25 is not None and bm25.model.scores.get("num_docs") != len(chunks):
            raise self._damaged(generation / "bm25", f"it indexes {bm25.model.scores.get('num_docs')} rows for {len(chunks)} chunks")
        return _State(documents, hashes, chunks, chunk_doc, vectors, bm25, MetadataColumns(documents))

    def _read_part(self, path: Path, read: Callable[[Path], object]) -> Any:  # noqa: ANN401 (whatever `read` returns)
        try:
            return read(path)
        except _UNREADABLE as exc:
            raise self._damaged(path, exc) from None

    def _damaged(self, path: Path, why: object) -> IndexDamaged:
        reason = getattr(why, "strerror", None) or (str(why).splitlines() or [type(why).__name__])[0][:200]
        return IndexDamaged(
            f"the knowledge index in {self.folder} is damaged: {path.name}: {reason}. "
            f"Move the folder aside and ingest your documents again (the pointer is {self.folder / 'CURRENT'})"
        )

    def _snapshot(self) -> _State:
        """The state to search: reloaded first when another process has committed a newer one
        (a damaged one is logged and the loaded one kept, so searches go on)."""
        stamp = self._pointer_stamp()
        if stamp != self._seen:
            with self._reload_lock:
                if stamp != self._seen:
                    try:
                        self._state, self._loaded = self._load(), stamp
                    except IndexDamaged as exc:
                        log.error("knowledge.index_reload_failed", error=str(exc))
                    self._seen = stamp
        return self._state

    def count(self) -> int:
        return len(self._snapshot().chunks)

    def documents(self) -> list[Document]:
        return list(self._snapshot().documents)

    # ---- writing -------------------------------------------------------------------------
    def ingest(
        self,
        documents: Sequence[Document],
        source: str | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> IngestReport:
        """Make the index hold `documents`; with `source`, that source's other documents are removed.
        A document whose id another source has is refused (`claim`); documents of any source but
        the demo's remove the demo articles."""
        with exclusive(self.folder / ".lock"):  # one ingest at a time over this folder, across processes
            stamp = self._pointer_stamp()  # start from the last commit, whoever made it
            if stamp != self._loaded:
                self._state = self._load()
                self._loaded = self._seen = stamp
            old = self._state
            spans = _document_spans(old.chunk_doc)
            report = IngestReport()
            displaced = _displaced_demo(old.documents, documents)
            old_rows = {d.id: i for i, d in enumerate(old.documents) if i not in displaced}
            accepted, report.refused = claim(documents, {doc_id: old.documents[row].source for doc_id, row in old_rows.items()})
            incoming = {d.id: d for d in accepted}
            dropped = displaced | {i for i, d in enumerate(old.documents) if source is not None and d.source == source and d.id not in incoming}
            keep = [d for i, d in enumerate(old.documents) if i not in dropped and d.id not in incoming]
            report.removed = sorted(old.documents[i].id for i in dropped)
            final = keep + list(incoming.values())
            chunks: list[Chunk] = []
            pieces: list[np.ndarray | int] = []  # per document: kept vectors, or how many chunks to embed
            texts: list[str] = []
            hashes: list[str] = []
            for document in final:
                digest = document.content_hash
                hashes.append(digest)
                row = old_rows.get(document.id)
                if row is not None and old.hashes[row] == digest:
                    start, end = spans.get(row, (0, 0))
                    chunks.extend(old.chunks[start:end])
                    pieces.append(old.vectors[start:end])
                    report.unchanged += document.id in incoming
                    continue
                (report.updated if row is not None else report.added).append(document.id)
                fresh = chunk_document(document, self.chunk_tokens, self.overlap_tokens)
                chunks.extend(fresh)
                texts.extend(indexed_text(document, c) for c in fresh)
                pieces.append(len(fresh))
            if not (report.added or report.updated or report.removed):
                report.chunks = len(old.chunks)
                return report  # nothing changed: keep the current generation as it is
            embedded = self._embed(texts, progress)
            cursor = 0
            for index, piece in enumerate(list(pieces)):
                if isinstance(piece, int):
                    pieces[index] = embedded[cursor:cursor + piece]
                    cursor += piece
            vectors = np.vstack(pieces) if pieces else np.zeros((0, self.embedder.dim), dtype=np.float32)
            state = self._build_state(final, hashes, chunks, vectors.astype(np.float32, copy=False))
            self._write(state)
            self._state = state
            self._loaded = self._seen = self._pointer_stamp()
            report.chunks = len(chunks)
            report.embedded_chunks = len(texts)
            return report

    def _embed(self, texts: list[str], progress: Callable[[int, int], None] | None) -> np.ndarray:
        """Embeds in batches (progress after each); an embedder failure aborts before anything is written."""
        batch = 256
        parts = []
        for start in range(0, len(texts), batch):
            parts.append(self.embedder.embed(texts[start:start + batch]))
            if progress:
                progress(len(parts[-1]), len(texts))
        return np.vstack(parts).astype(np.float32) if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)

    def _build_state(self, documents: list[Document], hashes: list[str], chunks: list[Chunk], vectors: np.ndarray) -> _State:
        by_id = {d.id: i for i, d in enumerate(documents)}
        texts = [indexed_text(documents[by_id[c.document_id]], c) for c in chunks]
        return _State(
            documents=documents,
            hashes=hashes,
            chunks=chunks,
            chunk_doc=np.array([by_id[c.document_id] for c in chunks], dtype=np.int32),
            vectors=vectors,
            bm25=Bm25.build(texts) if chunks else None,
            columns=MetadataColumns(documents),
        )

    def _write(self, state: _State) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"gen-{uuid.uuid4().hex[:12]}"
        generation = self.folder / name
        generation.mkdir()
        try:
            meta = {
                "format": FORMAT,
                "model_id": self.embedder.model_id,
                "documents": [d.model_dump(mode="json") for d in state.documents],
                "hashes": state.hashes,
                "chunks": [c.__dict__ for c in state.chunks],
            }
            (generation / "index.json").write_text(json.dumps(meta))
            np.save(generation / "vectors.npy", state.vectors)
            if state.bm25 is not None:
                state.bm25.save(generation / "bm25")
            pointer = self.folder / f"CURRENT.{name}"
            pointer.write_text(name)
            os.replace(pointer, self.folder / "CURRENT")  # the commit point
        except BaseException:
            shutil.rmtree(generation, ignore_errors=True)
            raise
        for old in self.folder.glob("gen-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    # ---- searching -----------------------------------------------------------------------
    def search(self, query: str, filters: dict[str, FilterValue], k: int, mode: str = "hybrid") -> list[Passage]:
        """The k best chunks; each carries its fused score and every sub-ranker's rank."""
        state = self._snapshot()
        if not state.chunks:
            return []
        allowed = state.columns.mask(filters)
        ranked = rank_rows(query, state.bm25, state.vectors, self.embedder, allowed[state.chunk_doc], self.config, mode)
        passages = []
        for row, score, ranks in ranked.top(k):
            chunk = state.chunks[row]
            document = state.documents[state.chunk_doc[row]]
            passages.append(
                Passage(
                    citation_id=chunk.citation_id,
                    document_id=chunk.document_id,
                    title=document.title,
                    section=chunk.section,
                    text=chunk.text,
                    start=chunk.start,
                    end=chunk.end,
                    score=round(score, 6),
                    ranks=ranks,
                )
            )
        return passages


    def search_documents(self, query: str, k: int, mode: str = "hybrid", filters: dict[str, FilterValue] | None = None) -> list[tuple[str, float]]:
        """Whole documents, each scored by its best chunk per ranker before fusion."""
        state = self._snapshot()
        if not state.chunks:
            return []
        starts = np.flatnonzero(np.diff(state.chunk_doc, prepend=-1))
        windows = self.config.windows(query)
        rows = ranker_scores(windows, state.bm25, state.vectors, self.embedder, self.config, mode)
        per_document = {name: group_max(values, starts) for name, values in rows.items()}
        docs = state.chunk_doc[starts]
        allowed = state.columns.mask(filters or {})[docs]
        ranked = fuse_rows(per_document, allowed, self.config, self.config.weights_for(len(windows)))
        return [(state.documents[docs[row]].id, score) for row, score, _ in ranked.top(k)]


def _displaced_demo(stored: Sequence[Document], documents: Sequence[Document]) -> set[int]:
    """Rows of the demo articles, when `documents` bring a team's own source to the index."""
    if all(d.source == DEMO_SOURCE for d in documents):
        return set()
    return {row for row, d in enumerate(stored) if d.source == DEMO_SOURCE}


def _document_spans(chunk_doc: np.ndarray) -> dict[int, tuple[int, int]]:
    """Row range of each document's chunks (a document's chunks are stored consecutively)."""
    if not len(chunk_doc):
        return {}
    starts = np.flatnonzero(np.diff(chunk_doc, prepend=-1))
    ends = np.append(starts[1:], len(chunk_doc))
    return {int(chunk_doc[s]): (int(s), int(e)) for s, e in zip(starts, ends, strict=True)}
