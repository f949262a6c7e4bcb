"""Reading knowledge documents: Markdown (front matter), HTML, plain text and JSONL.

Every format becomes the same `Document` (Markdown-style headings in `text`, HTML tags
removed, a citable id, the ingest's source), so one chunker serves them all. A file that
cannot be used yields a `LoadProblem` naming it and the others carry on.
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

from tools.knowledge.citations import MAX_ID_CHARS, citable_id
from tools.safe_parse import line_items, load_json, load_yaml, read_bounded, yaml_error_text

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
# One document (a JSONL line is one): a bigger file is refused before it is read, so a path to
# /dev/zero or a stray disk image ends in a warning, not in memory.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
# An ATX heading line. Greedy to the end of the line, closing hashes removed in `heading_title`:
# a lazy title before optional trailing runs backtracked cubically ("# a", 3,000 spaces, "x": 21 s).
HEADING = re.compile(r"^(#{1,6})[ \t]+(\S.*)$", re.MULTILINE)
# Markdown autolinks look like tags to an HTML parser; these are kept as text.
_AUTOLINK = re.compile(r"<(?:https?|mailto):[^\s<>\"']+>|<[^\s<>@\"'/]+@[^\s<>@\"'/]+>", re.IGNORECASE)
# In text that is not an HTML page only these are tags; any other `<name>` without attributes is
# a placeholder an article means literally ("<credit_card_account_id>", "<timestamp>") and is kept
# (one with attributes may carry an event handler, and is removed).
_HTML_ELEMENTS = frozenset(
    "a abbr address area article aside audio b base bdi bdo blockquote body br button canvas caption cite code col "
    "colgroup data datalist dd del details dfn dialog div dl dt em embed fieldset figcaption figure font footer form "
    "frame frameset h1 h2 h3 h4 h5 h6 head header hr html i iframe img input ins kbd label legend li link main map mark "
    "marquee menu meta meter nav noscript object ol optgroup option output p param picture pre progress q rp rt ruby s "
    "samp script section select slot small source span strong style sub summary sup svg table tbody td template "
    "textarea tfoot th thead time title tr track u ul var video wbr math".split()
)
# A tag cut off at the very end of a text never reaches the parser's tag handling.
_TRAILING_TAG = re.compile(r"<(?P<name>[a-zA-Z][a-zA-Z0-9]*)\b[^<>]*\Z")


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
    # A document may be missing because of this (an unreadable file, a broken line): the source
    # is then incomplete, and documents absent from it must not be taken as deleted.
    lost: bool = False


def _skipped(origin: str, message: str) -> LoadProblem:
    """A document (or a whole file of them) left out."""
    return LoadProblem(origin=origin, message=f"{message}; skipped", lost=True)


def _ignored(origin: str, message: str) -> LoadProblem:
    """A field left out; the document still goes in."""
    return LoadProblem(origin=origin, message=f"{message}; ignored")


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
            problems.append(_ignored(origin, _not_single(key)))
            continue
        if name == "updated":
            try:
                fields[name] = value if isinstance(value, date) else date.fromisoformat(text[:10])
            except ValueError:
                problems.append(_ignored(origin, f"field {key!r}: {text[:40]!r} is not an ISO date"))
        else:
            fields[name] = text
    return fields, problems


def _read_text(path: Path) -> str:
    """UTF-8 text; binary (NUL bytes), undecodable or oversized files raise ValueError."""
    data = read_bounded(path, MAX_DOCUMENT_BYTES)
    if b"\x00" in data[:8192]:
        raise ValueError("binary file (NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


class _HtmlText(HTMLParser):
    """Visible text with headings turned into Markdown headings; scripts and styles dropped.

    `keep_layout` reads text that only may hold some HTML (Markdown, plain text, JSONL): its line
    breaks are kept, and so are autolinks (`<https://...>`, `<help@example.com>`)."""

    _BLOCKS = {"p", "div", "li", "br", "tr", "section", "article", "pre", "blockquote", "table", "ul", "ol"}

    def __init__(self, *, keep_layout: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.keep_layout = keep_layout
        self.parts: list[str] = []
        self.title = ""
        self._skip = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raw = self.get_starttag_text() or ""
        if self.keep_layout and ((tag not in _HTML_ELEMENTS and not attrs) or _AUTOLINK.fullmatch(raw)):
            self.handle_data(raw.replace("&amp;", "&"))  # undoes `strip_tags`'s escaping
        elif tag in ("script", "style", "noscript"):
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if self.keep_layout and tag not in _HTML_ELEMENTS:
            self.handle_data(f"</{tag}>")
        elif tag in ("script", "style", "noscript"):
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
        self.parts.append(data if self.keep_layout else re.sub(r"\s+", " ", data))

    def text(self) -> str:
        joined = "".join(self.parts)
        if self.keep_layout:
            return joined
        lines = [line.strip() for line in joined.split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _parsed(raw: str, *, keep_layout: bool) -> _HtmlText:
    """`raw` read to its end by one parser."""
    parser = _HtmlText(keep_layout=keep_layout)
    parser.feed(raw)
    parser.close()  # what waits for more input (a trailing "<" or "&") is text after all
    return parser


def strip_tags(text: str) -> str:
    """`text` without HTML tags, scripts or styles, everything else as written: a passage is
    quoted into a customer reply, which must not carry markup from an article. Every `&` is
    escaped first, so entities stay as written and `&lt;script&gt;` does not turn into a tag."""
    stripped = _parsed(text.replace("&", "&amp;"), keep_layout=True).text()
    cut_off = _TRAILING_TAG.search(stripped)
    return stripped[: cut_off.start()] if cut_off and cut_off["name"].lower() in _HTML_ELEMENTS else stripped


def _markdown(path: Path, raw: str, source: str) -> Iterator[Document | LoadProblem]:
    meta: dict[str, object] = {}
    match = _FRONT_MATTER.match(raw)
    if match:
        try:
            loaded = load_yaml(match.group(1)) or {}
        except yaml.YAMLError as exc:
            yield _skipped(str(path), f"front matter is not valid YAML ({yaml_error_text(exc)})")
            return
        if not isinstance(loaded, dict):
            yield _ignored(str(path), "front matter is not a mapping of fields")
        meta = loaded if isinstance(loaded, dict) else {}
        raw = raw[match.end():]
    yield from _document(str(path), meta, raw, source, default_id=path.stem, default_title=_first_heading(raw) or path.stem)


def _first_heading(text: str) -> str | None:
    found = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else None


def heading_title(raw: str) -> str:
    """A heading's text without its optional closing hashes ("## Fees ##" -> "Fees"; "C#" stays)."""
    title = raw.rstrip()
    bare = title.rstrip("#")
    if bare != title and (not bare or bare[-1] in " \t"):
        title = bare
    return title.strip()


def _has_body(text: str) -> bool:
    """Whether anything but headings is there: headings alone give no passage to search."""
    return bool(HEADING.sub("", text).strip())


def _document(
    origin: str, meta: dict[str, object], text: str, source: str, *, default_id: str | None, default_title: str
) -> Iterator[Document | LoadProblem]:
    raw_id = _single_value(meta.get("id") or default_id or "")
    if raw_id is None:
        yield _skipped(origin, _not_single("id"))
        return
    doc_id = citable_id(raw_id)
    if not doc_id:
        yield _skipped(origin, "document has no id")
        return
    if len(doc_id) > MAX_ID_CHARS:
        yield _skipped(origin, f"document id {doc_id[:40]!r}... is longer than {MAX_ID_CHARS} characters, too long to cite")
        return
    if doc_id != raw_id:
        yield LoadProblem(origin=origin, message=f"document id {raw_id!r} has spaces or brackets, which a citation cannot hold; indexed as {doc_id!r}")
    text = strip_tags(text)
    if not text.strip():
        yield _skipped(origin, f"document {doc_id!r} is empty")
        return
    if not _has_body(text):
        yield _skipped(origin, f"document {doc_id!r} has headings but no text under them")
        return
    fields, problems = _metadata(meta, origin)
    yield from problems
    yield from _source_field(origin, meta.get("source"), source)
    title = _single_value(meta["title"]) if meta.get("title") else None
    if meta.get("title") and title is None:
        yield _ignored(origin, _not_single("title"))
    title = strip_tags(title or default_title).strip()
    yield Document(id=doc_id, title=title, text=text.strip("\n"), source=source, origin=origin, **fields)


def _source_field(origin: str, value: object, source: str) -> Iterator[LoadProblem]:
    """A document belongs to the source it is ingested under: a `source` field naming another
    would put it beyond that source's clean-up, so a deleted file would stay searchable."""
    if value not in (None, "") and _single_value(value) != source:
        yield _ignored(origin, f"field 'source' ({str(value)[:40]!r}) is not {source!r}, the source this ingest names")


def _jsonl(path: Path, source: str) -> Iterator[Document | LoadProblem]:
    for number, line in line_items(path, MAX_DOCUMENT_BYTES):  # one line at a time: a corpus can be large
        origin = f"{path}:{number}"
        if isinstance(line, ValueError):  # too long or not UTF-8: this line alone is skipped
            yield _skipped(origin, str(line))
            continue
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte-order mark
        if not line.strip():
            continue
        try:
            record = load_json(line)
        except json.JSONDecodeError as exc:
            yield _skipped(origin, f"not valid JSON ({exc.msg})")
            continue
        if not isinstance(record, dict):
            yield _skipped(origin, "a JSONL line must be an object {id, title, content, ...}")
            continue
        content = record.get("content", record.get("text", ""))
        if not isinstance(content, str):
            yield _skipped(origin, "field 'content' must be a string")
            continue
        yield from _document(origin, record, content, source, default_id=None, default_title=str(record.get("id") or ""))


def load_file(path: Path, source: str) -> Iterator[Document | LoadProblem]:
    """Documents from one file, or the problems that kept them out."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        yield LoadProblem(origin=str(path), message=f"unsupported file type {path.suffix or '(none)'!r}; skipped")
        return
    if not path.is_file():  # a pipe would block the read, a device would never end it
        yield _skipped(str(path), "not a regular file (a pipe, device or socket)")
        return
    try:
        if kind == "jsonl":
            yield from _jsonl(path, source)
            return
        raw = _read_text(path)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        yield _skipped(str(path), f"cannot read: {reason}")
        return
    if kind == "markdown":
        yield from _markdown(path, raw, source)
    elif kind == "html":
        page = _parsed(raw, keep_layout=False)
        yield from _document(str(path), {}, page.text(), source, default_id=path.stem, default_title=page.title.strip() or path.stem)
    else:
        first = raw.strip().splitlines()[0] if raw.strip() else ""
        yield from _document(str(path), {}, raw, source, default_id=path.stem, default_title=first[:120] or path.stem)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named directly, and entries with a supported suffix under named folders (sorted,
    recursive; one that is not a regular file is passed on, so it is reported, not ignored)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if not p.is_dir() and p.suffix.lower() in SUFFIXES)
        else:
            yield path


def load_documents(paths: Iterable[Path], source: str) -> tuple[list[Document], list[LoadProblem]]:
    """All usable documents under `paths`; a repeated id keeps the first and reports the rest."""
    documents: dict[str, Document] = {}
    problems: list[LoadProblem] = []
    for path in iter_files(paths):
        if not path.exists():
            problems.append(_skipped(str(path), "no such file or folder"))
            continue
        for item in load_file(path, source):
            if isinstance(item, LoadProblem):
                problems.append(item)
            elif item.id in documents:
                problems.append(LoadProblem(origin=item.origin, message=f"duplicate document id {item.id!r} (first in {documents[item.id].origin}); skipped"))
            else:
                documents[item.id] = item
    return list(documents.values()), problems
