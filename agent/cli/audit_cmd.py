"""`caseplan audit ...`: list, show, verify and export the run record. Read-only.

Exit codes scripts can rely on: 0 verified, 1 tampering found, 2 usage error or missing data
(unknown run, unfinished run, missing key, wrong schema version).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

import typer

from agent.audit import (
    AuditSource,
    RunQuery,
    VerifyReport,
    VerifySummary,
    export_runs,
    list_runs,
    load_run,
    parse_since,
    run_ids,
    run_timeline,
    utc_text,
    verify_export,
    verify_run,
    verify_runs,
)
from agent.cli.common import FOUND_PROBLEMS, USAGE_ERROR, atomic_write, echo_json, fail, output_file, state, with_errors
from agent.keyfile import new_key_text
from agent.record import RUN_STATUSES
from tools.safe_parse import bounded_lines

app = typer.Typer(help="Read, verify and export the run record (read-only).", no_args_is_help=True)

MAX_EXPORT_LINE_BYTES = 256 * 1024 * 1024  # one run per line; the largest real runs are a few MB
SINCE_HELP = "Only runs created at or after this ISO date or date-time (UTC unless it says otherwise)."


def _source(ctx: typer.Context) -> AuditSource:
    return AuditSource.open(state(ctx).settings)


def _query(since: str | None, status: str | None = None, template: str | None = None, limit: int | None = None) -> RunQuery:
    if status is not None and status not in RUN_STATUSES:
        fail(f"--status {status!r} is not a run status ({', '.join(RUN_STATUSES)})")
    if since is not None and not since.strip():
        fail("--since is empty; give an ISO date or date-time")
    return RunQuery(since=parse_since(since) if since else None, status=status, template=template, limit=limit)


@app.command("list")
@with_errors
def list_command(
    ctx: typer.Context,
    since: str = typer.Option(None, "--since", help=SINCE_HELP),
    status: str = typer.Option(None, "--status", help=f"One of {', '.join(RUN_STATUSES)}."),
    template: str = typer.Option(None, "--template", help="Plan template the run executed."),
    limit: int = typer.Option(50, "--limit", min=1, max=1_000_000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Runs, newest first."""
    query = _query(since, status, template, limit)  # bad filters fail before the database is opened
    runs = list_runs(_source(ctx), query)
    if as_json:
        echo_json([run.model_dump(mode="json") for run in runs])
        return
    typer.echo(f"{'run':<25} {'created (UTC)':<19}  {'status':<16} {'template':<17} {'reason':<21} chain")
    for run in runs:
        typer.echo(
            f"{run.id:<25} {utc_text(run.created_at)}  {run.status:<16} {run.template or '-':<17} "
            f"{run.escalation_reason or '-':<21} {run.chain}"
        )


@app.command("show")
@with_errors
def show(ctx: typer.Context, run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One run's outcome and timeline, PII masked."""
    timeline = run_timeline(_source(ctx), run_id)
    if as_json:
        echo_json(timeline.model_dump(mode="json"))
        return
    run = timeline.run
    root = f"root {run.root_hash[:16]}..." if run.root_hash else "not sealed yet"
    typer.echo(f"run:      {run.id}  {run.status}  {run.template or '-'}  (record format {run.record_version}, {run.chain}, {root})")
    typer.echo(f"created:  {utc_text(run.created_at)} UTC   ticket id: {run.ticket_id or '-'}")
    versions = timeline.versions or {}
    typer.echo("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    if run.escalation_reason:
        typer.echo(f"escalated: {run.escalation_reason}")
    typer.echo("events:")
    for event in timeline.events:
        typer.echo(f"  {event.seq:>3}  {utc_text(event.created_at, True)}  {event.kind:<15} {event.node:<9} {event.summary}")
    for approval in timeline.approvals:
        decided = f" by {approval.decided_by}" if approval.decided_by else ""
        typer.echo(f"approval: {approval.id} {approval.status}{decided}  (queue state, outside the seal: the approval event above is the record)")
    for escalation in timeline.escalations:
        typer.echo(f"escalation: {escalation.id} {escalation.reason} ({escalation.priority}, queue {escalation.queue}, {escalation.status})")
    if timeline.reply:
        typer.echo(f"reply:    {timeline.reply}")
    if timeline.error:
        typer.echo(f"error:    {timeline.error}")


def _print_report(report: VerifyReport) -> None:
    if report.status == "verified":
        typer.echo(f"verified: {report.message}")
        return
    if report.status == "in_progress":
        typer.echo(f"skipped:  {report.message}")
        return
    if report.status == "stalled":
        typer.echo(f"STALLED:  {report.message}")
        return
    if report.status == "unverifiable":
        typer.echo(f"cannot check: {report.message}")
        return
    typer.echo(f"TAMPERED: {report.message}")
    for finding in report.findings[1:]:
        typer.echo(f"          {finding.message}")


def _finish(summary: VerifySummary, as_json: bool) -> None:
    if as_json:
        echo_json(summary.model_dump(mode="json") | {"runs_per_second": summary.runs_per_second})
    else:
        for report in summary.reports:
            if report.status != "verified":
                _print_report(report)
        typer.echo(
            f"checked {summary.checked} runs in {summary.seconds:.2f}s ({summary.runs_per_second} runs/s): "
            f"{summary.verified} verified, {summary.tampered} tampered, {summary.in_progress} in progress, "
            f"{summary.stalled} stalled, {summary.unverifiable} could not be checked"
        )
    if summary.tampered or summary.stalled:
        raise typer.Exit(FOUND_PROBLEMS)
    if summary.unverifiable:
        raise typer.Exit(USAGE_ERROR)


@app.command("verify")
@with_errors
def verify(
    ctx: typer.Context,
    run_id: str = typer.Argument(None, help="The run to check."),
    all_runs: bool = typer.Option(False, "--all", help="Check every run (or those since --since)."),
    since: str = typer.Option(None, "--since", help=SINCE_HELP),
    file: Path = typer.Option(None, "--file", help="Check an `audit export` JSONL file instead of the database."),
    require_signed: bool = typer.Option(None, "--require-signed/--allow-unsigned", help="Fail runs without HMAC signatures."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check hash chains and root hashes: exit 0 verified, 1 tampering or a stalled run found, 2 cannot check."""
    if sum([run_id is not None, all_runs, file is not None]) != 1:
        fail("give a RUN_ID, --all or --file")
    if since and not all_runs:
        fail("--since goes with --all")
    source = _source(ctx)
    if file is not None:
        try:
            summary = verify_export(source, bounded_lines(file, MAX_EXPORT_LINE_BYTES), require_signed)
        except OSError as exc:
            fail(f"{file}: cannot read ({exc.strerror or exc})")
        except ValueError as exc:
            fail(f"{file}: {exc}")
        _finish(summary, as_json)
        return
    if all_runs:
        _finish(verify_runs(source, _query(since), require_signed), as_json)
        return
    report = verify_run(source, run_id, require_signed)
    echo_json(report.model_dump(mode="json")) if as_json else _print_report(report)
    if report.status in ("tampered", "stalled"):
        raise typer.Exit(FOUND_PROBLEMS)


@app.command("export")
@with_errors
def export(
    ctx: typer.Context,
    run_id: str = typer.Argument(None, help="One run (default: every run, or those since --since)."),
    since: str = typer.Option(None, "--since", help=SINCE_HELP),
    status: str = typer.Option(None, "--status", help=f"One of {', '.join(RUN_STATUSES)}."),
    template: str = typer.Option(None, "--template"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl: one run per line, events and hashes as stored."),
    output: Path = typer.Option(None, "--output", "-o", help="File to write (default: standard output)."),
) -> None:
    """Runs exactly as stored (PII masked), for archiving or `audit verify --file`."""
    if fmt != "jsonl":
        fail(f"unsupported format {fmt!r} (supported: jsonl)")
    target = output_file(output, state(ctx).settings) if output else None
    source = _source(ctx)
    if run_id is not None:
        if since or status or template:
            fail("give a RUN_ID or filters, not both")
        load_run(source, run_id)  # unknown run: exit 2 before anything is written
        ids = [run_id]
    else:
        ids = run_ids(source, _query(since, status, template))
    if target is None:
        _write_export(source, ids, sys.stdout)
        return
    with atomic_write(target) as out:
        count = _write_export(source, ids, out)
    typer.echo(f"exported {count} runs to {output}", err=True)


def _write_export(source: AuditSource, ids: list[str], out: IO[str]) -> int:
    count = 0
    for run in export_runs(source, ids):
        if run.in_progress:
            typer.echo(f"note: run {run.id} is still in progress ({run.status}); exported without a root hash", err=True)
        out.write(run.model_dump_json() + "\n")
        count += 1
    return count


@app.command("keygen")
def keygen() -> None:
    """A new random key, for the vault key, signing key or PII fingerprint key variable."""
    typer.echo(new_key_text())
