"""`caseplan replay`: re-run recorded runs from the record, with no network and no side effects.

Exit codes: 0 every run reproduced (or, with --live, no decision changed), 1 a divergence, a
changed decision or a tampered record, 2 usage error or a run that cannot be replayed.
"""

from __future__ import annotations

import json

import typer

from agent.audit import AuditSource, RunQuery, parse_since
from agent.cli.common import FOUND_PROBLEMS, USAGE_ERROR, echo_json, fail, state, with_errors
from agent.replay import Replayer, ReplayReport, ReplaySummary

MARKS = {"same": "ok", "differs": "DIFFERS", "missing": "MISSING", "extra": "EXTRA"}


def _short(value: object, limit: int = 100) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def print_report(report: ReplayReport, timeline: bool = True) -> None:
    typer.echo(f"{report.mode} replay of {report.run_id}: {report.status}")
    if timeline and report.timeline:
        for check in report.timeline:
            seq = str(check.seq) if check.seq is not None else "-"
            typer.echo(f"  {seq:>3}  {MARKS[check.status]:<7} {check.kind:<15} {check.node:<9} {check.summary}")
    for note in report.notes:
        typer.echo(f"note: {note}")
    if report.divergence:
        typer.echo(f"first divergence: {report.divergence.message}")
        for diff in report.divergence.fields[:10]:
            typer.echo(f"  {diff.path}: recorded {_short(diff.recorded)} | replayed {_short(diff.replayed)}")
    for change in report.changes:
        typer.echo(f"changed {change.decision}: recorded {_short(change.recorded)} -> now {_short(change.replayed)}")
    typer.echo(report.message)
    if report.stopped:
        typer.echo(f"  replay stopped: {report.stopped}")


def print_summary(summary: ReplaySummary) -> None:
    for report in summary.reports:
        if not report.ok:
            print_report(report, timeline=False)
        elif summary.mode == "live":  # decisions held; say what else moved (versions, model answers)
            for note in report.notes:
                typer.echo(f"note: {report.run_id}: {note}")
    for skip in summary.skipped:
        typer.echo(f"skipped: {skip.reason}")
    good = "reproduced" if summary.mode == "strict" else "unchanged"
    bad = "diverged" if summary.mode == "strict" else "changed"
    typer.echo(
        f"{summary.mode} replay of {summary.replayed} runs in {summary.seconds:.1f}s: {summary.ok} {good}, "
        f"{summary.failed} {bad}, {len(summary.skipped)} skipped"
    )


def register(app: typer.Typer) -> None:
    @app.command("replay")
    @with_errors
    def replay(
        ctx: typer.Context,
        run_id: str = typer.Argument(None, help="The run to replay."),
        all_runs: bool = typer.Option(False, "--all", help="Replay every finished run (or those since --since)."),
        since: str = typer.Option(None, "--since", help="With --all: runs created at or after this ISO date or date-time."),
        live: bool = typer.Option(
            False, "--live", help="Route, plan and check with the current models and policies (tools still from the record)."
        ),
        as_json: bool = typer.Option(False, "--json"),
    ) -> None:
        """Re-run recorded runs from the record and check every decision is the same."""
        if (run_id is None) == (not all_runs):
            fail("give a RUN_ID or --all")
        if since and not all_runs:
            fail("--since goes with --all")
        settings = state(ctx).settings
        source = AuditSource.open(settings)  # checks the schema version before anything else opens it
        replayer = Replayer(state(ctx).runtime(), source, live=live)
        if run_id is not None:
            report = replayer.replay(run_id)
            echo_json(report.model_dump(mode="json")) if as_json else print_report(report)
            if not report.ok:
                raise typer.Exit(FOUND_PROBLEMS)
            return
        summary = replayer.replay_many(RunQuery(since=parse_since(since) if since else None))
        echo_json(summary.model_dump(mode="json")) if as_json else print_summary(summary)
        if summary.failed:
            raise typer.Exit(FOUND_PROBLEMS)
        if any(not skip.in_progress for skip in summary.skipped):
            raise typer.Exit(USAGE_ERROR)
