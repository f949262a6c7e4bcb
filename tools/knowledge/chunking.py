"""Section-aware chunking: headings and paragraphs first, then a token bound with overlap.

Chunks never cross a section and never cut a sentence that fits the bound; a longer one (a
list without punctuation, a log pasted in) is cut at line breaks, then between words, so no
chunk, and no reply quoting one, outgrows the bound. Spans index into `Document.text`, so a
citation points at the exact characters the passage came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from tools.knowledge.citations import citation_id
from tools.knowledge.documents import HEADING, Document, heading_title

_PARAGRAPH = re.compile(r"\n\s*\n")
# A sentence ends at . ! ? (optionally closed by quotes/brackets) before whitespace, or at a line break
# inside a list or table: those lines stand alone.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n(?=\s*(?:[-*+]|\d+[.)]|\|))")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_LINE_BREAK = re.compile(r"\n")
_WORD = re.compile(r"\S+")


def count_tokens(text: str) -> int:
    """Words and punctuation marks: close to a WordPiece count for English, and cheap."""
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class Chunk:
    document_id: str
    ordinal: int
    section: str
    text: str
    start: int
    end: int

    @property
    def citation_id(self) -> str:
        return citation_id(self.document_id, self.start, self.end)


def _sections(text: str) -> Iterator[tuple[str, int, int]]:
    """(heading path, body start, body end) for the text before the first heading and under each one."""
    headings = list(HEADING.finditer(text))
    stack: list[tuple[int, str]] = []
    first = headings[0].start() if headings else len(text)
    yield "", 0, first
    for index, heading in enumerate(headings):
        level = len(heading.group(1))
        stack = [item for item in stack if item[0] < level] + [(level, heading_title(heading.group(2)))]
        end = headings[index + 1].start() if index + 1 < len(headings) else len(text)
        yield " > ".join(name for _, name in stack), heading.end(), end


def _spans(text: str, pattern: re.Pattern[str], start: int, end: int) -> Iterator[tuple[int, int]]:
    """Non-blank pieces of text[start:end] between matches of `pattern`, trimmed."""
    cursor = start
    for match in pattern.finditer(text, start, end):
        yield from _trimmed(text, cursor, match.start())
        cursor = match.end()
    yield from _trimmed(text, cursor, end)


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        offset = start + piece.index(stripped)
        yield offset, offset + len(stripped)


def _bounded(text: str, start: int, end: int, max_tokens: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, tokens) of the sentence text[start:end]: whole if it fits `max_tokens`, else
    its lines, and a line that is still too long in runs of whole words."""
    tokens = count_tokens(text[start:end])
    if tokens <= max_tokens:
        yield start, end, tokens
        return
    lines = list(_spans(text, _LINE_BREAK, start, end))
    if len(lines) == 1:
        yield from _word_runs(text, start, end, max_tokens)
        return
    for line_start, line_end in lines:
        yield from _bounded(text, line_start, line_end, max_tokens)


def _word_runs(text: str, start: int, end: int, max_tokens: int) -> Iterator[tuple[int, int, int]]:
    """Runs of whole words of at most `max_tokens` (a single longer word is a run of its own).
    Tokens never span whitespace, so a run's count is the sum of its words'."""
    run: tuple[int, int, int] | None = None
    for word in _WORD.finditer(text, start, end):
        tokens = count_tokens(word.group())
        if run is not None and run[2] + tokens > max_tokens:
            yield run
            run = None
        run = (word.start(), word.end(), tokens) if run is None else (run[0], word.end(), run[2] + tokens)
    if run is not None:
        yield run


def chunk_document(document: Document, max_tokens: int = 300, overlap_tokens: int = 50) -> list[Chunk]:
    """Chunks of at most `max_tokens` (more only by one word longer than the bound), overlapping by
    whole sentences."""
    text = document.text
    chunks: list[Chunk] = []
    for section, start, end in _sections(text):
        sentences: list[tuple[int, int, int]] = []  # start, end, tokens
        for p_start, p_end in _spans(text, _PARAGRAPH, start, end):
            for s_start, s_end in _spans(text, _SENTENCE_END, p_start, p_end):
                sentences.extend(_bounded(text, s_start, s_end, max_tokens))
        window: list[tuple[int, int, int]] = []
        fresh = False  # the window holds sentences no chunk has emitted yet
        for sentence in sentences:
            if window and fresh and sum(t for _, _, t in window) + sentence[2] > max_tokens:
                chunks.append(_chunk(document, len(chunks), section, window))
                kept: list[tuple[int, int, int]] = []
                for item in reversed(window):
                    if sum(t for _, _, t in kept) + item[2] > overlap_tokens or sum(t for _, _, t in kept) + item[2] + sentence[2] > max_tokens:
                        break
                    kept.insert(0, item)
                window = kept
            window.append(sentence)
            fresh = True
        if window and fresh:
            chunks.append(_chunk(document, len(chunks), section, window))
    return chunks


def _chunk(document: Document, ordinal: int, section: str, window: list[tuple[int, int, int]]) -> Chunk:
    start, end = window[0][0], window[-1][1]
    return Chunk(document_id=document.id, ordinal=ordinal, section=section, text=document.text[start:end], start=start, end=end)


def indexed_text(document: Document, chunk: Chunk) -> str:
    """What BM25 and the embedder see: the title and heading path give a passage its context."""
    heading = " > ".join(part for part in (document.title, chunk.section) if part)
    return f"{heading}\n{chunk.text}" if heading else chunk.text
