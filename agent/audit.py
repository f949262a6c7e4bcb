"""The auditor's view of the record: list, show, verify and export runs. Read-only.

Functions over an `AuditSource` that return Pydantic models, so the CLI prints them and the
HTTP service can return them as they are (everything in them is masked). Nothing here writes:
the database schema is checked, never migrated. Runs are read as raw stored text, so a
truncated or corrupted payload is reported against its event instead of failing the read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import Text, cast, or_, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine

from agent.db import make_engine
from agent.integrity import (
    PLAIN_CHAIN,
    Finding,
    RecordedEvent,
    RecordedRun,
    RecordError,
    RunInProgress,
    check_run,
)
from agent.record import Approval, RecordProtection, Run, RunEvent, UnknownRunError, VaultEntry
from agent.schema import check_schema
from agent.settings import Settings
from tools.base import first_problem
from tools.escalation import DeskEvent, Escalation

EXPORT_FORMAT = "caseplan.run/1"
PAGE = 200
STALLED_AFTER = timedelta(days=1)  # no run that is not waiting for a person is silent this long


@dataclass(frozen=True)
class AuditSource:
    """A record database opened for reading, with the keys this process holds."""

    engine: Engine
    protection: RecordProtection

    @classmethod
    def open(cls, settings: Settings) -> AuditSource:
        engine = make_engine(settings.database_url, read_only=True)
        check_schema(engine)
        return cls(engine, RecordProtection.from_settings(settings, writer=False))


class RunQuery(BaseModel):
    """Which runs: created at or after `since`, with this status and template, newest first."""

    since: datetime | None = None
    status: str | None = None
    template: str | None = None
    limit: int | None = Field(None, ge=1)
    offset: int = Field(0, ge=0)  # runs to skip (pages of the console's list)


class RunSummary(BaseModel):
    id: str
    status: str
    template: str | None
    ticket_id: str | None
    escalation_reason: str | None
    plan_hash: str | None
    created_at: datetime
    updated_at: datetime
    record_version: int
    chain: str
    root_hash: str | None

    @property
    def signed(self) -> bool:
        return self.chain != PLAIN_CHAIN


class EventView(BaseModel):
    seq: int
    kind: str
    node: str
    created_at: datetime
    summary: str
    payload: Any
    hash: str


class ApprovalView(BaseModel):
    id: str
    status: str
    plan_hash: str
    steps: list[dict[str, Any]]
    requested_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None


class DeskEventView(BaseModel):
    action: str
    actor: str
    detail: Any
    at: datetime


class EscalationView(BaseModel):
    id: str
    reason: str
    priority: str
    queue: str
    status: str
    summary: str
    created_at: datetime
    claimed_by: str | None = None
    resolution: str | None = None
    history: list[DeskEventView] = []  # what people did with it: the desk's trail, outside the sealed record


class RunTimeline(BaseModel):
    """One run as an auditor reads it: the outcome, then every event in order (masked)."""

    run: RunSummary
    ticket: Any
    route: Any
    reply: str | None
    error: str | None
    versions: Any
    events: list[EventView]
    approvals: list[ApprovalView]
    escalations: list[EscalationView]


class VerifyReport(BaseModel):
    run_id: str
    status: Literal["verified", "tampered", "in_progress", "stalled", "unverifiable"]
    record_version: int | None = None
    chain: str | None = None
    events: int = 0
    findings: list[Finding] = []
    message: str = ""


class VerifySummary(BaseModel):
    checked: int = 0
    verified: int = 0
    tampered: int = 0
    in_progress: int = 0
    stalled: int = 0
    unverifiable: int = 0
    seconds: float = 0.0
    reports: list[VerifyReport] = []

    @property
    def runs_per_second(self) -> float:
        return round(self.checked / self.seconds, 1) if self.seconds else 0.0


class RunExport(RecordedRun):
    """One line of `audit export --format jsonl`: the run and its events exactly as stored."""

    format: Literal["caseplan.run/1"] = EXPORT_FORMAT


def parse_since(text: str) -> datetime:
    """An ISO date or date-time; naive means UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except ValueError:
        raise RecordError(f"--since {text[:60]!r} is not an ISO date or date-time (e.g. 2026-11-25 or 2026-11-25T09:00)") from None
    except OverflowError:  # 0001-01-01 with a positive offset is before the first UTC instant
        raise RecordError(f"--since {text[:60]!r} is outside the dates a record can hold") from None


def _runs_query(query: RunQuery) -> Any:
    runs, events = Run.__table__, RunEvent.__table__
    statement = select(runs).order_by(runs.c.created_at.desc(), runs.c.id)
    if query.since is not None:
        # Also by the first event's time, which the chain seals: a run whose row was given an
        # earlier date is still selected (and its seal then says the row was changed).
        arrived = select(events.c.run_id).where(events.c.seq == 1, events.c.created_at >= query.since)
        statement = statement.where(or_(runs.c.created_at >= query.since, runs.c.id.in_(arrived)))
    if query.status:
        statement = statement.where(runs.c.status == query.status)
    if query.template:
        statement = statement.where(runs.c.template == query.template)
    return statement


def list_runs(source: AuditSource, query: RunQuery) -> list[RunSummary]:
    """Newest first. A run whose row was edited to hold a wrong type is listed with format 0 and
    the earliest date, so it shows up (and `audit verify` says what is wrong), not an error."""
    columns = Run.__table__.c
    text_times = _text_times(source.engine)
    chosen = [columns[name] if name not in text_times else cast(columns[name], Text).label(name) for name in RunSummary.model_fields]
    statement = _runs_query(query).with_only_columns(*chosen)  # no JSON to decode
    if query.limit:
        statement = statement.limit(query.limit)
    if query.offset:
        statement = statement.offset(query.offset)
    stored_time = _time_reader(source.engine)
    with source.engine.connect() as conn:
        rows = conn.execute(statement).mappings().all()
    summaries = []
    for row in rows:
        try:
            summaries.append(RunSummary.model_validate({**row, **{name: stored_time(row[name]) for name in text_times}}))
        except (ValueError, TypeError):
            stand_in = _unreadable_run(row, ValueError("unreadable"))
            summaries.append(RunSummary.model_construct(**{name: getattr(stand_in, name, None) for name in RunSummary.model_fields}))
    return summaries


def _decode(text: str | None) -> tuple[Any, str | None]:
    if text is None:
        return None, None
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} at character {exc.pos} of {len(text)}"
    except RecursionError:  # caseplan never writes JSON nested this deep
        return None, f"JSON nested too deeply to read ({len(text)} characters)"


_RUN_JSON = ("ticket", "route", "versions")


def _load_runs(engine: Engine, run_ids: Sequence[str]) -> list[RecordedRun]:
    """Runs and their events as stored text, decoded here so damage is pinned to its event, and
    a run whose rows cannot be read at all is reported on its own, not raised for every run."""
    runs, events = Run.__table__, RunEvent.__table__
    as_text = set(_RUN_JSON) | _text_times(engine)
    run_columns = [c if c.name not in as_text else cast(c, Text).label(c.name) for c in runs.c]
    event_columns = [c if c.name not in as_text | {"payload", "versions"} else cast(c, Text).label(c.name) for c in events.c]
    stored_time = _time_reader(engine)
    with engine.connect() as conn:
        run_rows = conn.execute(select(*run_columns).where(runs.c.id.in_(run_ids))).mappings().all()
        event_rows = conn.execute(
            select(*event_columns).where(events.c.run_id.in_(run_ids)).order_by(events.c.run_id, events.c.seq)
        ).mappings().all()
    by_run: dict[str, list[Any]] = {}
    for row in event_rows:
        by_run.setdefault(row["run_id"], []).append(row)
    loaded = {}
    for row in run_rows:
        try:
            loaded[row["id"]] = _recorded_run(row, by_run.get(row["id"], []), stored_time)
        except (ValueError, TypeError) as exc:  # a time, number or text column holding something else
            loaded[row["id"]] = _unreadable_run(row, exc)
    return [loaded[run_id] for run_id in run_ids if run_id in loaded]


def utc_text(at: datetime, precise: bool = False) -> str:
    """A stored time as auditors read it, in UTC (stored in UTC; SQLite hands it back without
    its zone); `precise`: the time of day to the millisecond."""
    at = at.astimezone(UTC) if at.tzinfo else at
    return at.strftime("%H:%M:%S.%f")[:-3] if precise else at.strftime("%Y-%m-%d %H:%M:%S")


def _text_times(engine: Engine) -> set[str]:
    """The time columns read as text, to be parsed by `_time_reader` (SQLite stores them as text)."""
    return {"created_at", "updated_at"} if engine.dialect.name == "sqlite" else set()


def _time_reader(engine: Engine) -> Any:
    """How a stored time is read: SQLite keeps text (which an edit can make anything), read
    here by SQLAlchemy's own parser so a bad value fails one run; PostgreSQL returns datetimes."""
    if engine.dialect.name != "sqlite":
        return lambda value: value
    parse = sqlite.DATETIME().result_processor(engine.dialect, None)
    column = Run.__table__.c.created_at.type  # sqlmodel's UTCDateTime: its reading, after the parse
    return lambda value: column.process_result_value(parse(value), engine.dialect) if value is not None else None


def _recorded_run(row: Any, event_rows: list[Any], stored_time: Any) -> RecordedRun:
    events = []
    for event in event_rows:
        payload, problem = _decode(event["payload"])
        versions, versions_problem = _decode(event["versions"])
        if problem is None and not isinstance(payload, dict):
            problem = f"a JSON {type(payload).__name__}, not an object"
        events.append(
            RecordedEvent(
                seq=event["seq"],
                kind=event["kind"],
                node=event["node"],
                payload=payload,
                versions=versions if isinstance(versions, dict) else None,
                created_at=stored_time(event["created_at"]),
                prev_hash=event["prev_hash"],
                hash=event["hash"],
                payload_error=problem or (f"versions {versions_problem}" if versions_problem else None),
            )
        )
    fields = dict(row)
    for name in _RUN_JSON:
        fields[name], problem = _decode(fields[name])
        if problem:
            fields[name] = {"unreadable": problem}  # no longer what was sealed: the root hash will say so
    fields["created_at"], fields["updated_at"] = stored_time(fields["created_at"]), stored_time(fields["updated_at"])
    return RecordedRun.model_validate({**fields, "events": events})


def _unreadable_run(row: Any, exc: Exception) -> RecordedRun:
    """A stand-in that carries why the run could not be read; verification reports it."""
    why = first_problem(exc, "run") if isinstance(exc, ValidationError) else (str(exc).splitlines() or [type(exc).__name__])[0]
    return RecordedRun.model_construct(
        id=str(row["id"]),
        status=str(row["status"]),
        record_version=0,
        chain="",
        root_hash=row["root_hash"],
        created_at=datetime.min.replace(tzinfo=UTC),
        updated_at=datetime.min.replace(tzinfo=UTC),
        events=[],
        load_error=f"its stored rows cannot be read as caseplan writes them ({why[:200]}): edited outside caseplan",
    )


def load_run(source: AuditSource, run_id: str) -> RecordedRun:
    found = _load_runs(source.engine, [run_id])
    if not found:
        raise UnknownRunError(run_id)
    return found[0]


def _check(source: AuditSource, run: RecordedRun, require_signed: bool) -> VerifyReport:
    base = VerifyReport(run_id=run.id, status="verified", record_version=run.record_version, chain=run.chain, events=len(run.events))
    if run.load_error:
        finding = Finding(run_id=run.id, problem="unreadable", message=f"run {run.id}: {run.load_error}")
        return base.model_copy(update={"status": "tampered", "findings": [finding], "message": finding.message})
    try:
        findings = check_run(run, source.protection.keyring.signer_for, require_signed)
    except RecordError as exc:
        return base.model_copy(update={"status": "unverifiable", "message": str(exc)})
    if findings:
        return base.model_copy(update={"status": "tampered", "findings": findings, "message": findings[0].message})
    if run.in_progress:
        return base.model_copy(update=_unsealed(run))
    return base.model_copy(update={"message": f"run {run.id}: {len(run.events)} events verified ({run.chain})"})


def _unsealed(run: RecordedRun, now: datetime | None = None) -> dict[str, Any]:
    """An unfinished run whose events so far verify: in progress, or stalled when it has been
    silent too long for a run that is not waiting for a person. Stalled is a crash nobody
    resumed, or a finished run whose seal and last events were removed: either way someone
    must look (`caseplan replay`, or resume it)."""
    last = max([run.created_at, *(event.created_at for event in run.events)])
    silent = (now or datetime.now(UTC)) - (last if last.tzinfo else last.replace(tzinfo=UTC))
    if run.status == "waiting_approval" or silent < STALLED_AFTER:
        return {"status": "in_progress", "message": f"{RunInProgress(run.id, run.status)} ({len(run.events)} events so far verify)"}
    hours = silent.total_seconds() / 3600
    return {
        "status": "stalled",
        "message": f"run {run.id} is not sealed and has had no event for {hours:.0f} h (status {run.status}): "
        "a run that stopped and was never resumed, or a seal removed with the last events; replay or resume it",
    }


def verify_run(source: AuditSource, run_id: str, require_signed: bool | None = None) -> VerifyReport:
    """Check one finished run; an unknown or unfinished run, or one that cannot be checked, raises."""
    return verify_recorded(source, load_run(source, run_id), require_signed)


def report_run(source: AuditSource, run_id: str) -> VerifyReport:
    """One run's report whatever its state: an unfinished run or one this process cannot check
    (a signed run without the key) is a status in the report, for the service to show."""
    return _check(source, load_run(source, run_id), _required(source, None))


def verify_recorded(source: AuditSource, run: RecordedRun, require_signed: bool | None = None) -> VerifyReport:
    report = _check(source, run, _required(source, require_signed))
    if report.status == "unverifiable":
        raise RecordError(report.message)
    if report.status == "in_progress":
        raise RunInProgress(run.id, run.status)
    return report


def _required(source: AuditSource, require_signed: bool | None) -> bool:
    return source.protection.require_signed if require_signed is None else require_signed


def _tally(reports: Iterable[VerifyReport], started: float) -> VerifySummary:
    summary = VerifySummary()
    for report in reports:
        summary.checked += 1
        setattr(summary, report.status, getattr(summary, report.status) + 1)
        summary.reports.append(report)
    summary.seconds = round(time.perf_counter() - started, 4)
    return summary


def run_ids(source: AuditSource, query: RunQuery) -> list[str]:
    statement = _runs_query(query).with_only_columns(Run.__table__.c.id)
    if query.limit:
        statement = statement.limit(query.limit)
    with source.engine.connect() as conn:
        return list(conn.execute(statement).scalars())


def iter_runs(source: AuditSource, ids: Sequence[str]) -> Iterator[RecordedRun]:
    """Runs in pages, so `--all` over a large record stays in bounded memory."""
    for start in range(0, len(ids), PAGE):
        yield from _load_runs(source.engine, ids[start : start + PAGE])


def verify_runs(source: AuditSource, query: RunQuery, require_signed: bool | None = None) -> VerifySummary:
    """Check every run the query selects; unfinished runs are counted, not failed."""
    started = time.perf_counter()
    required = _required(source, require_signed)
    return _tally((_check(source, run, required) for run in iter_runs(source, run_ids(source, query))), started)


def export_runs(source: AuditSource, ids: Sequence[str]) -> Iterator[RunExport]:
    for run in iter_runs(source, ids):
        yield RunExport.model_validate(run.model_dump())


def verify_export(source: AuditSource, lines: Iterable[str], require_signed: bool | None = None) -> VerifySummary:
    """Check an export file line by line; a truncated or corrupted line is a finding, not a crash."""
    started = time.perf_counter()
    required = _required(source, require_signed)

    def reports() -> Iterator[VerifyReport]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                run = RunExport.model_validate_json(line)
            except ValidationError as exc:
                first = exc.errors()[0]
                problem = f"line {number}: not a caseplan run export ({first['msg']}): truncated or corrupted"
                finding = Finding(run_id=f"line {number}", problem="unreadable", message=problem)
                yield VerifyReport(run_id=f"line {number}", status="tampered", findings=[finding], message=problem)
                continue
            yield _check(source, run, required)

    return _tally(reports(), started)


def summarize(kind: str, payload: Any) -> str:
    """One line per event for timelines; a payload not in the shape caseplan writes (edited
    outside it) is shown as it is, marked, rather than stopping the timeline."""
    if not isinstance(payload, dict):
        return "(unreadable payload)"
    try:
        return _summary(kind, payload)
    except (AttributeError, TypeError, ValueError, KeyError):
        return clip(f"(not in the shape caseplan writes) {json.dumps(payload, ensure_ascii=False, default=str)}")


def _summary(kind: str, p: dict[str, Any]) -> str:
    if kind == "intake":
        ticket = p.get("ticket") or {}
        return clip(f"{ticket.get('requester_email') or '-'}: {ticket.get('text', '')}")
    if kind == "route":
        if p.get("template"):
            return f"{p['template']} (confidence {p.get('confidence', 0):.2f}, {p.get('method')})"
        return f"none fits: {p.get('reason')} ({p.get('detail', '')})"
    if kind == "model_call":
        return clip(f"{p.get('purpose')} {p.get('model_id')} -> {json.dumps(p.get('output'), ensure_ascii=False)}")
    if kind == "plan":
        plan = p.get("plan") or {}
        steps = " -> ".join(step.get("tool", "?") for step in plan.get("steps", []))
        return f"{p.get('template')} hash {str(p.get('plan_hash'))[:12]}: {steps}"
    if kind == "policy_decision":
        steps = ", ".join(f"{s.get('step_id')}={s.get('decision')}" for s in p.get("steps", []))
        return f"{p.get('decision')}: {steps}"
    if kind == "approval":
        answer = p.get("answer") or {}
        verdict = "approved" if isinstance(answer, dict) and answer.get("approved") else "rejected"
        return f"{verdict} by {answer.get('by', '?') if isinstance(answer, dict) else '?'}"
    if kind == "tool_call":
        return clip(f"{p.get('step_id')} {p.get('tool')} {json.dumps(p.get('args'), ensure_ascii=False)}")
    if kind == "tool_result":
        detail = p.get("output") if p.get("status") in ("succeeded", "deduplicated") else p.get("error")
        return clip(f"{p.get('step_id')} {p.get('status')} (attempts {p.get('attempts')}) {json.dumps(detail, ensure_ascii=False)}")
    if kind == "escalation":
        return clip(f"{p.get('reason')} at {p.get('stage')}: {p.get('detail', '')}")
    if kind == "reply":
        return clip(p.get("text", ""))
    return clip(json.dumps(p, ensure_ascii=False))


def clip(text: str, limit: int = 120) -> str:
    """One line, at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_timeline(source: AuditSource, run_id: str) -> RunTimeline:
    run = load_run(source, run_id)
    with source.engine.connect() as conn:
        approvals = conn.execute(
            select(Approval.__table__).where(Approval.__table__.c.run_id == run_id).order_by(Approval.__table__.c.requested_at)
        ).mappings().all()
        escalations = conn.execute(
            select(Escalation.__table__).where(Escalation.__table__.c.run_id == run_id).order_by(Escalation.__table__.c.created_at)
        ).mappings().all()
        trail = conn.execute(select(DeskEvent.__table__).where(DeskEvent.__table__.c.run_id == run_id).order_by(DeskEvent.__table__.c.id)).mappings().all()
    mask = source.protection.mask
    routed = [e.payload for e in run.events if e.kind == "route" and e.payload_error is None]
    return RunTimeline(
        run=RunSummary.model_validate(run.model_dump()),
        ticket=run.ticket,
        route=run.route or (routed[-1] if routed else None),  # a run waiting for approval has routed, not finished
        reply=run.reply,
        error=run.error,
        versions=run.versions,
        events=[
            EventView(
                seq=e.seq,
                kind=e.kind,
                node=e.node,
                created_at=e.created_at,
                summary=summarize(e.kind, e.payload) if e.payload_error is None else f"(unreadable: {e.payload_error})",
                payload=e.payload,
                hash=e.hash,
            )
            for e in run.events
        ],
        approvals=[ApprovalView.model_validate(mask(dict(row))) for row in approvals],
        escalations=[
            EscalationView.model_validate(mask({**row, "history": [dict(move) for move in trail if move["escalation_id"] == row["id"]]})) for row in escalations
        ],
    )


def sealed_entries(source: AuditSource, run_id: str) -> dict[str, VaultEntry]:
    """The run's vault rows by reference (its ticket and events; plans are looked up by hash)."""
    with source.engine.connect() as conn:
        rows = conn.execute(select(VaultEntry.__table__).where(VaultEntry.__table__.c.run_id == run_id)).mappings().all()
    return {row["ref"]: VaultEntry.model_validate(dict(row)) for row in rows}

