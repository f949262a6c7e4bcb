"""Where eval cases come from: the user's own files, or built-in suites over `../shared/evaldata`
read in place (never copied): Bitext dev (routing, slots), ABCD canonical workflows, tau2 tasks.

Built-in suites say what they leave out and why (`coverage`), so a number is never quietly
computed over an easier subset.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from agent.evals.cases import CaseFileError, LoadedCases, load_case_file, parse_cases
from agent.example_bank import BankError, load_mapping
from agent.settings import REPO_ROOT, Settings
from plans.catalogue import Catalogue
from tools.safe_parse import load_yaml, read_text_file, yaml_error_text

BITEXT_TEMPLATES = REPO_ROOT / "configs" / "bitext_templates.yaml"
TAU2_TOOLS = REPO_ROOT / "configs" / "tau2_tools.yaml"
ABCD_REQUESTER = "jane@example.com"  # a sandbox demo customer, so account workflows can run through
BUILTIN = ("bitext-dev", "abcd", "tau2-mock", "tau2-telecom")


class Suite(BaseModel):
    name: str
    source: str
    loaded: LoadedCases


class SuiteError(ValueError):
    """A suite that cannot be built (missing data folder or mapping file); the message says which."""


def evaldata_path(settings: Settings) -> Path:
    path = Path(settings.evals.data_dir).expanduser()
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise SuiteError(f"{what} not found at {path} (set evals.data_dir or CASEPLAN__EVALS__DATA_DIR)")
    return path


def _read_mapping(path: Path, what: str) -> dict[str, Any]:
    try:
        data = load_yaml(read_text_file(path))
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: cannot read the {what} ({yaml_error_text(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the {what} ({exc})") from None
    if not isinstance(data, dict):
        raise SuiteError(f"{path}: the {what} must be a mapping")
    return data


def stratified(rows: list[dict[str, str]], key: str, limit: int | None) -> list[dict[str, str]]:
    """Round-robin over the values of `key` in file order: any prefix is as balanced as it can be."""
    groups: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        groups[row[key]].append(row)
    ordered: list[dict[str, str]] = []
    depth = 0
    while len(ordered) < len(rows) and (limit is None or len(ordered) < limit):
        for name in sorted(groups):
            if depth < len(groups[name]):
                ordered.append(groups[name][depth])
        depth += 1
    return ordered[:limit] if limit is not None else ordered


def bitext_suite(settings: Settings, catalogue: Catalogue, tools: Iterable[str], limit: int | None) -> Suite:
    """Bitext dev utterances; expected route from configs/bitext_templates.yaml, expected slots
    where the routed template has a slot of the entity's type."""
    path = _need(evaldata_path(settings) / "bitext" / "dev.csv", "Bitext dev set")
    try:
        mapping = load_mapping(BITEXT_TEMPLATES).intents
    except BankError as exc:
        raise SuiteError(str(exc)) from None
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [dict(row, _line=str(number)) for number, row in enumerate(csv.DictReader(handle), start=2)]
    unmapped = sorted({row["intent"] for row in rows} - set(mapping))
    coverage = [f"Bitext dev: {len(rows)} utterances, {len({r['intent'] for r in rows})} intents; sample of {limit if limit is not None else len(rows)} (round-robin over intents)"]
    if unmapped:
        coverage.append(f"intents without a mapping in {BITEXT_TEMPLATES.name} (left out): {', '.join(unmapped)}")
    chosen = stratified([row for row in rows if row["intent"] in mapping], "intent", limit)
    without_slot: set[str] = set()
    raw: list[tuple[str, Any]] = []
    for row in chosen:
        template = mapping[row["intent"]]
        expect: dict[str, Any] = {"route": template}
        if row.get("entity_type") and template in catalogue.templates:
            slot = next((name for name, spec in catalogue.get(template).slots.items() if spec.type == row["entity_type"]), None)
            if slot:
                expect["slots"] = {slot: row["entity_value"]}
            else:
                without_slot.add(row["entity_type"])
        case = {"id": f"bitext-dev-{row['_line']}", "ticket": {"text": row["utterance"]}, "expect": expect, "tags": [row["intent"]]}
        raw.append((f"dev.csv:{row['_line']}", case))
    if without_slot:
        coverage.append(f"entity types with no slot of that type in the routed template (route checked, slot not): {', '.join(sorted(without_slot))}")
    loaded = parse_cases(raw, catalogue.names(), tools)
    loaded.notes = coverage
    return Suite(name="bitext-dev", source=str(path), loaded=loaded)


def abcd_suite(settings: Settings, catalogue: Catalogue, tools: Iterable[str]) -> Suite:
    """One case per template that claims an ABCD subflow: the actions its run takes, in order,
    must be the subflow's canonical action sequence from kb.json."""
    path = _need(evaldata_path(settings) / "abcd" / "kb.json", "ABCD kb.json")
    kb = json.loads(path.read_text(encoding="utf-8"))
    raw: list[tuple[str, Any]] = []
    notes = []
    for template in catalogue.routable():
        flow = template.abcd_flow
        if not flow:
            continue
        if flow not in kb:
            notes.append(f"{template.name}: claims ABCD subflow {flow!r}, which kb.json does not have")
            continue
        sequence = ">".join(kb[flow])
        case = {
            "id": f"abcd-{flow}",
            "ticket": {"text": template.examples[0], "requester_email": ABCD_REQUESTER},
            "expect": {"template": template.name, "criteria": [f"abcd_sequence:{sequence}"]},
            "tags": [flow],
        }
        raw.append((f"kb.json:{flow}", case))
    covered = {template.abcd_flow for template in catalogue.routable()}
    notes.append(f"ABCD: {len(raw)} of {len(kb)} subflows have a template; not covered: {', '.join(sorted(set(kb) - covered))}")
    loaded = parse_cases(raw, catalogue.names(), tools)
    loaded.notes = notes
    return Suite(name="abcd", source=str(path), loaded=loaded)


def tau2_suite(settings: Settings, domain: str, catalogue: Catalogue, tools: Iterable[str]) -> Suite:
    """tau2 tasks whose every gold action maps to a caseplan tool (configs/tau2_tools.yaml);
    every other task is listed as out of scope with the reason."""
    files = {"mock": "mock/tasks.json", "telecom": "telecom/tasks_small.json"}
    path = _need(evaldata_path(settings) / "tau2" / files[domain], f"tau2 {domain} tasks")
    mapping = _read_mapping(TAU2_TOOLS, "tau2 tool mapping")
    tool_map: dict[str, str | None] = mapping.get("tools") or {}
    templates: dict[str, str] = mapping.get("templates") or {}
    raw: list[tuple[str, Any]] = []
    notes = []
    tasks = json.loads(path.read_text(encoding="utf-8"))
    for task in tasks:
        actions = [action["name"] for action in (task.get("evaluation_criteria") or {}).get("actions") or []]
        text = (task.get("ticket") or "").strip() or ((task.get("user_scenario") or {}).get("instructions") or "").strip()
        missing = sorted({name for name in actions if not tool_map.get(name)})
        if not actions:
            notes.append(f"{task['id']}: out of scope (no gold actions to compare with)")
        elif missing:
            notes.append(f"{task['id']}: out of scope (no caseplan tool for {', '.join(missing)})")
        elif not text:
            notes.append(f"{task['id']}: out of scope (no ticket text)")
        else:
            mapped = [tool_map[name] for name in actions]
            expect: dict[str, Any] = {"tool_calls": [{"tool": tool} for tool in mapped]}
            template = next((templates[tool] for tool in mapped if tool in templates), None)
            if template:
                expect["template"] = template
            raw.append((f"{path.name}:{task['id']}", {"id": f"tau2-{domain}-{task['id']}", "ticket": {"text": text}, "expect": expect}))
    notes.insert(0, f"tau2 {domain}: {len(raw)} of {len(tasks)} tasks in scope")
    loaded = parse_cases(raw, catalogue.names(), tools)
    loaded.notes = notes
    return Suite(name=f"tau2-{domain}", source=str(path), loaded=loaded)


def load_suite(name: str, settings: Settings, catalogue: Catalogue, tools: list[str], limit: int | None) -> Suite:
    """A built-in suite by name, or a case file (.jsonl, .csv, .yaml) by path."""
    if name == "bitext-dev":
        return bitext_suite(settings, catalogue, tools, limit if limit is not None else settings.evals.bitext_sample)
    if name == "abcd":
        suite = abcd_suite(settings, catalogue, tools)
    elif name in ("tau2-mock", "tau2-telecom"):
        suite = tau2_suite(settings, name.removeprefix("tau2-"), catalogue, tools)
    else:
        path = Path(name)
        if not path.exists():
            raise CaseFileError(f"{name}: no such file, and not a built-in suite ({', '.join(BUILTIN)})")
        suite = Suite(name=path.stem, source=str(path), loaded=load_case_file(path, catalogue.names(), tools, settings.limits.max_ticket_chars))
    if limit is not None:
        suite.loaded.cases = suite.loaded.cases[:limit]
    return suite
