"""Markdown documents with front matter, split into sections that keep their heading path."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Section:
    document_id: str
    title: str
    section: str
    text: str
    start: int
    end: int
    metadata: dict[str, str] = field(default_factory=dict)


def parse_markdown(path: Path) -> list[Section]:
    """Split one Markdown file into sections; offsets index into the body after front matter."""
    raw = path.read_text(encoding="utf-8")
    meta: dict[str, str] = {}
    match = _FRONT_MATTER.match(raw)
    if match:
        meta = {str(k): str(v) for k, v in (yaml.safe_load(match.group(1)) or {}).items()}
        raw = raw[match.end():]
    document_id = meta.pop("id", path.stem)
    title = meta.pop("title", path.stem.replace("-", " "))
    headings = list(_HEADING.finditer(raw))
    sections: list[Section] = []
    path_stack: list[tuple[int, str]] = []
    for index, heading in enumerate(headings):
        level, name = len(heading.group(1)), heading.group(2).strip()
        path_stack = [item for item in path_stack if item[0] < level] + [(level, name)]
        body_start = heading.end()
        body_end = headings[index + 1].start() if index + 1 < len(headings) else len(raw)
        body = raw[body_start:body_end]
        text = body.strip()
        if not text:
            continue
        start = body_start + body.index(text)
        sections.append(
            Section(
                document_id=document_id,
                title=title,
                section=" > ".join(name for _, name in path_stack),
                text=text,
                start=start,
                end=start + len(text),
                metadata=meta,
            )
        )
    return sections
