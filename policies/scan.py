"""Looks for PII that escaped masking: in log files and in the stored run record.

Uses the same detectors as the masker (`policies.pii`), so a finding is a value that should
have been masked and was not. Placeholders (`[email:1a2b3c4d]`) and partial forms such as
`j***@example.com` are not findings. The PII vault is skipped: it holds the sealed originals.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel
from sqlalchemy import Text, cast, inspect, select
from sqlalchemy.engine import Engine

from agent.schema import MANAGED_TABLES, record_metadata
from agent.vault import mask_record
from policies.pii import find_pii, url_decoded
from tools.safe_parse import check_regular

DEFAULT_KINDS = ("email", "phone", "card")
SKIPPED_TABLES = frozenset({"piivault"})  # sealed originals, encrypted on purpose


class ScanFinding(BaseModel):
    where: str  # file:line or table:key:column
    kind: str
    excerpt: str  # the value itself masked, with a little context


def _excerpt(text: str, start: int, end: int, kind: str) -> str:
    left, right = text[max(0, start - 20) : start], text[end : end + 20]
    return " ".join(f"{left}<{kind}>{right}".split())


def scan_text(text: str, where: str, kinds: Iterable[str] = DEFAULT_KINDS) -> list[ScanFinding]:
    """Findings in one string (URL escapes decoded); machine identifiers (hashes, run ids) are not PII."""
    text = url_decoded(text)
    if mask_record(text, tuple(kinds)) == text:  # the record's own rule for what counts
        return []
    return [
        ScanFinding(where=where, kind=f.kind, excerpt=_excerpt(text, f.start, f.end, f.kind))
        for f in find_pii(text, kinds)
    ]


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def scan_files(paths: Iterable[Path], kinds: Iterable[str] = DEFAULT_KINDS) -> list[ScanFinding]:
    kinds = tuple(kinds)
    findings: list[ScanFinding] = []
    for path in paths:
        check_regular(path)  # a pipe would block, a device never end
        with path.open(encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                findings += scan_text(line, f"{path}:{number}", kinds)
    return findings


def scan_record(engine: Engine, kinds: Iterable[str] = DEFAULT_KINDS) -> list[ScanFinding]:
    """Every text and JSON column of the record's tables."""
    kinds = tuple(kinds)
    metadata = record_metadata()
    present = set(inspect(engine).get_table_names())
    findings: list[ScanFinding] = []
    with engine.connect() as conn:
        for name in sorted((MANAGED_TABLES - SKIPPED_TABLES) & present):
            table = metadata.tables[name]
            key = list(table.primary_key.columns)[0]
            # every column as stored text: a JSON column edited into invalid JSON is scanned as
            # the text it holds, not decoded (and failed) on the way out
            as_text = select(*(cast(column, Text).label(column.name) for column in table.c))
            for row in conn.execute(as_text).mappings():
                for column, value in row.items():
                    if isinstance(value, str) and value[:1] in "[{":
                        try:
                            value = json.loads(value)
                        except ValueError:
                            pass
                    for text in _strings(value):
                        findings += scan_text(text, f"{name}:{row[key.name]}:{column}", kinds)
    return findings
