"""A small embedded BM25 index over document sections (SQLite FTS5)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from tools.contracts.knowledge import FilterValue, Passage
from tools.knowledge.documents import Section

_WORD = re.compile(r"[A-Za-z0-9]+")


def _match_expression(query: str) -> str:
    """OR of quoted terms: hostile query syntax cannot reach FTS5's parser."""
    terms = sorted({word.lower() for word in _WORD.findall(query) if len(word) > 1})
    return " OR ".join(f'"{term}"' for term in terms)


class FtsIndex:
    """BM25 over sections in one SQLite file; metadata filters by equality or set."""

    backend_name = "embedded-fts5"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), check_same_thread=False)
        self.conn.execute(
            "CREATE VIRTUAL TABLE IF NOT EXISTS sections USING fts5("
            "text, title, section, document_id UNINDEXED, start UNINDEXED, end UNINDEXED, "
            "product UNINDEXED, tokenize='porter unicode61')"
        )

    def replace_all(self, sections: Iterable[Section]) -> int:
        rows = [
            (s.text, s.title, s.section, s.document_id, s.start, s.end, s.metadata.get("product", ""))
            for s in sections
        ]
        with self.conn:
            self.conn.execute("DELETE FROM sections")
            self.conn.executemany(
                "INSERT INTO sections(text, title, section, document_id, start, end, product) VALUES (?,?,?,?,?,?,?)",
                rows,
            )
        return len(rows)

    def count(self) -> int:
        return self.conn.execute("SELECT count(*) FROM sections").fetchone()[0]

    def search(self, query: str, filters: dict[str, FilterValue], k: int) -> list[Passage]:
        expression = _match_expression(query)
        if not expression:
            return []
        sql = (
            "SELECT document_id, title, section, text, start, end, bm25(sections) AS score "
            "FROM sections WHERE sections MATCH ?"
        )
        params: list[object] = [expression]
        for name, value in filters.items():
            if name not in {"product", "document_id"}:
                raise ValueError(f"unknown filter field {name!r} (known: document_id, product)")
            values = [value] if isinstance(value, str) else list(value)
            sql += f" AND {name} IN ({','.join('?' * len(values))})"
            params.extend(values)
        sql += " ORDER BY score LIMIT ?"
        params.append(k)
        rows = self.conn.execute(sql, params).fetchall()
        return [
            Passage(
                citation_id=f"{doc}#{start}-{end}",
                document_id=doc,
                title=title,
                section=section,
                text=text,
                start=start,
                end=end,
                score=round(-score, 6),
                ranks={"bm25": rank},
            )
            for rank, (doc, title, section, text, start, end, score) in enumerate(rows, start=1)
        ]
