"""Reading knowledge documents: Markdown (front matter), HTML, plain text and JSONL.

Every format becomes the same `Document` (Markdown-style headings in `text`), so one
chunker serves them all. A file that cannot be used yields a `LoadProblem` naming it and
the others carry on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict

from tools.safe_parse import load_json, load_yaml, yaml_error_text

SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".txt": "text", ".jsonl": "jsonl"}
# Metadata the index keeps as filterable fields; anything else stays in `extra`.
METADATA_ALIASES = {
    "product": "product",
    "product_line": "product",
    "category": "category",
    "error_category": "category",
    "error_code_category": "category",
    "updated": "updated",
    "last_updated": "updated",
    "date": "updated",
}
MAX_FIELD_CHARS = 500
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)


class Document(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    text: str
    source: str
    product: str | None = None
    category: str | None = None
    updated: date | None = None
    origin: str = ""  # file (and line) it came from, for messages

    @property
    def content_hash(self) -> str:
        """Changes whenever anything the index stores for this document changes."""
        payload = json.dumps(self.model_dump(mode="json", exclude={"origin"}), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


class LoadProblem(BaseModel):
    origin: str
    message: str


def _single_value(value: object) -> str | None:
    """A field's value as text, or None when it is not one short value: a list, a mapping, NUL,
    or a string longer than any id, title or product name (what a YAML bomb expands into)."""
    if not isinstance(value, str | int | float | date):
        return None
    text = str(value).strip()
    return text if len(text) <= MAX_FIELD_CHARS and "\x00" not in text else None


def _not_single(key: object) -> str:
    return f"field {str(key)[:40]!r} must be a single value of at most {MAX_FIELD_CHARS} characters"


def _metadata(raw: dict[str, object], origin: str) -> tuple[dict[str, object], list[LoadProblem]]:
    fields: dict[str, object] = {}
    problems: list[LoadProblem] = []
    for key, value in raw.items():
        name = METADATA_ALIASES.get(str(key).lower())
        if name is None or value in (None, ""):
            continue
        text = _single_value(value)
        if text is None:
            problems.append(LoadProblem(origin=origin, message=f"{_not_single(key)}; ignored"))
            continue
        if name == "updated":
            try:
                fields[name] = value if isinstance(value, date) else date.fromisoformat(text[:10])
            except ValueError:
                problems.append(LoadProblem(origin=origin, message=f"field {key!r}: {text[:40]!r} is not an ISO date; ignored"))
        else:
            fields[name] = text
    return fields, problems


def _read_text(path: Path) -> str:
    """UTF-8 text; binary (NUL bytes) or undecodable files raise ValueError."""
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise ValueError("binary file (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


class _HtmlText(HTMLParser):
    """Visible text with headings turned into Markdown headings; scripts and styles dropped."""

    _BLOCKS = {"p", "div", "li", "br", "tr", "section", "article", "pre", "blockquote", "table", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "noscript"):
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "noscript"):
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif re.fullmatch(r"h[1-6]", tag) or tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data
            return
        self.parts.append(re.sub(r"\s+", " ", data))

    def text(self) -> str:
        joined = "".join(self.parts)
        lines = [line.strip() for line in joined.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _markdown(path: Path, raw: str, source: str) -> Iterator[Document | LoadProblem]:
    meta: dict[str, object] = {}
    match = _FRONT_MATTER.match(raw)
    if match:
        try:
            loaded = load_yaml(match.group(1)) or {}
        except yaml.YAMLError as exc:
            yield LoadProblem(origin=str(path), message=f"front matter is not valid YAML ({yaml_error_text(exc)}); skipped")
            return
        if not isinstance(loaded, dict):
            yield LoadProblem(origin=str(path), message="front matter is not a mapping of fields; ignored")
        meta = loaded if isinstance(loaded, dict) else {}
        raw = raw[match.end():]
    yield from _document(str(path), meta, raw, source, default_id=path.stem, default_title=_first_heading(raw) or path.stem)


def _first_heading(text: str) -> str | None:
    found = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None


def _document(
    origin: str, meta: dict[str, object], text: str, source: str, *, default_id: str | None, default_title: str
) -> Iterator[Document | LoadProblem]:
    doc_id = _single_value(meta.get("id") or default_id or "")
    if doc_id is None:
        yield LoadProblem(origin=origin, message=f"{_not_single('id')}; skipped")
        return
    if not doc_id:
        yield LoadProblem(origin=origin, message="document has no id; skipped")
        return
    if not text.strip():
        yield LoadProblem(origin=origin, message=f"document {doc_id!r} is empty; skipped")
        return
    fields, problems = _metadata(meta, origin)
    yield from problems
    named = {key: _single_value(meta.get(key)) for key in ("title", "source") if meta.get(key)}
    for key in [key for key, value in named.items() if value is None]:
        yield LoadProblem(origin=origin, message=f"{_not_single(key)}; ignored")
    title = named.get("title") or default_title.strip()
    yield Document(id=doc_id, title=title, text=text.strip("\n"), source=named.get("source") or source, origin=origin, **fields)


def _jsonl(path: Path, raw: str, source: str) -> Iterator[Document | LoadProblem]:
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        origin = f"{path}:{number}"
        try:
            record = load_json(line)
        except json.JSONDecodeError as exc:
            yield LoadProblem(origin=origin, message=f"not valid JSON ({exc.msg}); skipped")
            continue
        if not isinstance(record, dict):
            yield LoadProblem(origin=origin, message="a JSONL line must be an object {id, title, content, ...}; skipped")
            continue
        content = record.get("content", record.get("text", ""))
        if not isinstance(content, str):
            yield LoadProblem(origin=origin, message="field 'content' must be a string; skipped")
            continue
        yield from _document(origin, record, content, source, default_id=None, default_title=str(record.get("id") or ""))


def load_file(path: Path, source: str) -> Iterator[Document | LoadProblem]:
    """Documents from one file, or the problems that kept them out."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        yield LoadProblem(origin=str(path), message=f"unsupported file type {path.suffix or '(none)'!r}; skipped")
        return
    try:
        raw = _read_text(path)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        yield LoadProblem(origin=str(path), message=f"cannot read: {reason}; skipped")
        return
    if kind == "markdown":
        yield from _markdown(path, raw, source)
    elif kind == "jsonl":
        yield from _jsonl(path, raw, source)
    elif kind == "html":
        parser = _HtmlText()
        parser.feed(raw)
        yield from _document(str(path), {}, parser.text(), source, default_id=path.stem, default_title=parser.title.strip() or path.stem)
    else:
        first = raw.strip().splitlines()[0] if raw.strip() else ""
        yield from _document(str(path), {}, raw, source, default_id=path.stem, default_title=first[:120] or path.stem)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and supported files under named folders (sorted, recursive)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
        else:
            yield path


def load_documents(paths: Iterable[Path], source: str) -> tuple[list[Document], list[LoadProblem]]:
    """All usable documents under `paths`; a repeated id keeps the first and reports the rest."""
    documents: dict[str, Document] = {}
    problems: list[LoadProblem] = []
    for path in iter_files(paths):
        if not path.exists():
            problems.append(LoadProblem(origin=str(path), message="no such file or folder"))
            continue
        for item in load_file(path, source):
            if isinstance(item, LoadProblem):
                problems.append(item)
            elif item.id in documents:
                problems.append(LoadProblem(origin=item.origin, message=f"duplicate document id {item.id!r} (first in {documents[item.id].origin}); skipped"))
            else:
                documents[item.id] = item
    return list(documents.values()), problems
