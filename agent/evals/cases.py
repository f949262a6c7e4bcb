"""Eval cases: a ticket plus what should happen to it, loaded from JSONL, YAML or CSV.

A file is checked row by row: a malformed row, an unknown template, tool or criterion makes
that row invalid (with its line and the reason) and the valid rows still run.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.evals.criteria import CRITERIA, criterion_name
from agent.tickets import Ticket
from tools.contracts.escalation import EscalationReason
from tools.safe_parse import load_json, load_yaml, read_text_file, yaml_error_text

CSV_REQUIRED = ("id", "text")
CSV_COLUMNS = (
    "id", "text", "subject", "requester_email", "ticket_id",
    "expected_template", "expected_route", "escalation_reason",
    "expected_slots", "expected_tool_calls", "forbidden_tools", "criteria", "tags",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCallExpectation(_Strict):
    """A tool the run must call; `args` are the key arguments that must match (others are free)."""

    tool: str
    args: dict[str, Any] = {}


class Expectations(_Strict):
    template: str | None = Field(None, description="The plan the run ends with; `escalate` for a hand-off.")
    route: str | None = Field(None, description="The router's choice; `escalate` when nothing fits.")
    escalation_reason: EscalationReason | None = None
    slots: dict[str, Any] = {}
    tool_calls: list[ToolCallExpectation] | None = Field(None, description="In order; also the exact action sequence.")
    forbidden_tools: list[str] = []
    criteria: list[str] = []


class EvalCase(_Strict):
    id: str = Field(min_length=1, max_length=200)
    ticket: Ticket
    expect: Expectations
    tags: list[str] = []
    source: str = ""


class InvalidRow(BaseModel):
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class LoadedCases(BaseModel):
    cases: list[EvalCase] = []
    invalid: list[InvalidRow] = []
    notes: list[str] = []


class CaseFileError(ValueError):
    """The file as a whole cannot be read (missing, wrong format, missing columns)."""


def case_problems(case: EvalCase, templates: Iterable[str], tools: Iterable[str]) -> list[str]:
    """What in a parsed case names something caseplan does not have."""
    templates, tools = set(templates), set(tools)
    expect = case.expect
    problems = [
        f"unknown template {name!r} in expect.{field}"
        for field, name in (("template", expect.template), ("route", expect.route))
        if name is not None and name not in templates
    ]
    named_tools = [call.tool for call in expect.tool_calls or []] + list(expect.forbidden_tools)
    problems += [f"unknown tool {name!r}" for name in named_tools if name not in tools]
    problems += [f"unknown criterion {item!r} (known: {', '.join(sorted(CRITERIA))})" for item in expect.criteria if criterion_name(item) not in CRITERIA]
    if expect == Expectations():
        problems.append("no expectations: give at least one of template, route, slots, tool_calls, forbidden_tools, criteria")
    return problems


def _validation_reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors())


def _json_cell(value: str, column: str) -> Any:
    try:
        return load_json(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{column}: not valid JSON ({exc.msg})") from None


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def csv_row_to_case(row: dict[str, str]) -> dict[str, Any]:
    """A flat CSV row as the nested case mapping; JSON cells for slots and tool calls."""
    cell = {key: (value or "").strip() for key, value in row.items() if key}
    ticket = {key: cell[key] for key in ("text", "subject", "requester_email", "ticket_id") if cell.get(key)}
    expect: dict[str, Any] = {}
    for column, key in (("expected_template", "template"), ("expected_route", "route"), ("escalation_reason", "escalation_reason")):
        if cell.get(column):
            expect[key] = cell[column]
    if cell.get("expected_slots"):
        expect["slots"] = _json_cell(cell["expected_slots"], "expected_slots")
    if cell.get("expected_tool_calls"):
        expect["tool_calls"] = _json_cell(cell["expected_tool_calls"], "expected_tool_calls")
    if cell.get("forbidden_tools"):
        expect["forbidden_tools"] = _split(cell["forbidden_tools"])
    if cell.get("criteria"):
        expect["criteria"] = _split(cell["criteria"])
    return {"id": cell.get("id", ""), "ticket": ticket, "expect": expect, "tags": _split(cell.get("tags", ""))}


def _raw_rows(path: Path) -> list[tuple[str, Any]]:
    """(where, raw mapping or parse error) for each row of the file."""
    try:
        text = read_text_file(path)
    except UnicodeDecodeError:
        raise CaseFileError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise CaseFileError(f"{path}: cannot read ({exc.strerror})") from None
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows: list[tuple[str, Any]] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((f"{path.name}:{number}", load_json(line)))
            except json.JSONDecodeError as exc:
                rows.append((f"{path.name}:{number}", ValueError(f"not valid JSON ({exc.msg})")))
        return rows
    if suffix in (".yaml", ".yml"):
        try:
            data = load_yaml(text)
        except yaml.YAMLError as exc:
            raise CaseFileError(f"{path}: invalid YAML ({yaml_error_text(exc)})") from None
        items = data.get("cases") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise CaseFileError(f"{path}: expected a list of cases (or a mapping with `cases:`)")
        return [(f"{path.name}: case {number}", item) for number, item in enumerate(items, start=1)]
    if suffix == ".csv":
        try:
            return _csv_rows(path, text)
        except csv.Error as exc:  # e.g. a cell over the csv module's 128 KB field limit
            raise CaseFileError(f"{path}: not a readable CSV file ({exc})") from None
    raise CaseFileError(f"{path}: unknown eval file type {suffix or '(none)'!r}; use .jsonl, .csv or .yaml")


def _csv_rows(path: Path, text: str) -> list[tuple[str, Any]]:
    reader = csv.DictReader(text.splitlines())
    columns = reader.fieldnames or []
    missing = [column for column in CSV_REQUIRED if column not in columns]
    if missing:
        raise CaseFileError(f"{path}: missing column(s) {', '.join(missing)} (required: {', '.join(CSV_REQUIRED)})")
    unknown = [column for column in columns if column not in CSV_COLUMNS]
    if unknown:
        raise CaseFileError(f"{path}: unknown column(s) {', '.join(unknown)} (known: {', '.join(CSV_COLUMNS)})")
    repeated = sorted({column for column in columns if columns.count(column) > 1})
    if repeated:
        raise CaseFileError(f"{path}: column(s) {', '.join(repeated)} appear more than once")
    rows: list[tuple[str, Any]] = []
    for row in reader:
        where = f"{path.name}:{reader.line_num}"
        if None in row:  # more cells than the header has columns
            rows.append((where, ValueError(f"{len(row[None])} cell(s) more than the header's {len(columns)} columns")))
            continue
        try:
            rows.append((where, csv_row_to_case(row)))
        except ValueError as exc:
            rows.append((where, exc))
    return rows


def parse_cases(rows: Iterable[tuple[str, Any]], templates: Iterable[str], tools: Iterable[str], max_ticket_chars: int | None = None) -> LoadedCases:
    """Valid cases and the reasons the others are not; duplicate ids and tickets longer than
    caseplan accepts (`max_ticket_chars`) are invalid too."""
    templates, tools = list(templates), list(tools)
    loaded = LoadedCases()
    seen: set[str] = set()
    for where, raw in rows:
        if isinstance(raw, Exception):
            loaded.invalid.append(InvalidRow(where=where, reason=str(raw)))
            continue
        try:
            case = EvalCase.model_validate(raw)
        except ValidationError as exc:
            loaded.invalid.append(InvalidRow(where=where, reason=_validation_reason(exc)))
            continue
        problems = case_problems(case, templates, tools)
        if max_ticket_chars is not None and len(case.ticket.text) > max_ticket_chars:
            problems.append(f"ticket text is {len(case.ticket.text)} characters; the limit is {max_ticket_chars}")
        if case.id in seen:
            problems.append(f"duplicate case id {case.id!r}")
        if problems:
            loaded.invalid.append(InvalidRow(where=f"{where} ({case.id})", reason="; ".join(problems)))
            continue
        seen.add(case.id)
        loaded.cases.append(case.model_copy(update={"source": case.source or where}))
    return loaded


def load_case_file(path: Path, templates: Iterable[str], tools: Iterable[str], max_ticket_chars: int | None = None) -> LoadedCases:
    return parse_cases(_raw_rows(path), templates, tools, max_ticket_chars)


def write_cases_jsonl(path: Path, cases: Iterable[EvalCase]) -> int:
    """Append cases as JSONL rows; returns how many were written. A file whose last line has no
    newline (edited by hand) gets one first, so its last case and the first new one stay two rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("ab+") as handle:
        if handle.seek(0, os.SEEK_END) > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        for case in cases:
            handle.write((case.model_dump_json(exclude_defaults=True) + "\n").encode())
            count += 1
    return count

