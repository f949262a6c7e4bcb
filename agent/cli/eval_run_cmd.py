"""`caseplan eval run | harvest | label | suites`: measure caseplan on your own tickets and on the
built-in suites, gate changes on regressions, and grow the suite from human corrections."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import typer

from agent.audit import parse_since
from agent.cli.common import FOUND_PROBLEMS, echo_json, fail, output_file, output_folder, state, with_errors
from agent.cli.eval_group import app
from agent.evals.cases import CaseFileError, write_cases_jsonl
from agent.evals.harvest import existing_ids, harvest
from agent.evals.metrics import summarise
from agent.evals.outcomes import OutcomeError, record_outcome
from agent.evals.report import Comparison, Report, ReportError, compare, load_report, now_stamp, write_report
from agent.evals.runner import CaseRun, EvalRunner, eval_settings
from agent.evals.suites import BUILTIN, SuiteError, load_suite
from agent.schema import ensure_schema
from tools.contracts.escalation import EscalationReason
from tools.file_lock import exclusive

EVAL_ERRORS = (CaseFileError, SuiteError, ReportError, OutcomeError)
REASONS = EscalationReason.__args__


def _progress(run: CaseRun) -> None:
    mark = "." if run.passed else "F"
    typer.echo(mark, nl=False, err=True)


def _print_summary(report: Report, files: list[Path], comparison: Comparison | None) -> None:
    m = report.metrics
    hats = "  ".join(f"pass^{j} {value:.3f}" for j, value in m.pass_hat.items())
    typer.echo(f"\n{report.suite}: {m.cases} cases x k={report.k} = {m.runs} runs")
    typer.echo(f"  {hats}")
    for name in ("template_accuracy", "route_accuracy", "slot_accuracy", "action_sequence_match", "escalation_precision", "escalation_recall"):
        value = getattr(m, name)
        if value is not None:
            typer.echo(f"  {name.replace('_', ' ')}: {value:.3f}")
    typer.echo(f"  latency p50 {m.latency_ms_p50:.0f} ms, p95 {m.latency_ms_p95:.0f} ms; {m.tokens_per_ticket:.1f} tokens, ${m.cost_usd_per_ticket:.6f} per ticket")
    if report.invalid:
        typer.echo(f"  {len(report.invalid)} invalid rows were not run (see report.md)")
    if comparison is not None:
        verdict = "REGRESSED" if comparison.regressed else "no regression"
        typer.echo(f"compared with {comparison.baseline}: {verdict}")
        for change in comparison.regressed_metrics:
            typer.echo(f"  metric {change.name}: {change.before:.3f} -> {change.after:.3f}")
        for change in comparison.regressed_cases:
            typer.echo(f"  regressed case {change.name}: pass rate {change.before:.2f} -> {change.after:.2f}")
        for change in comparison.improved_cases:
            typer.echo(f"  improved case {change.name}: pass rate {change.before:.2f} -> {change.after:.2f}")
    typer.echo("report: " + ", ".join(str(path) for path in files))


@app.command("run")
@with_errors
def run(
    ctx: typer.Context,
    suite: str = typer.Argument(..., help=f"A case file (.jsonl, .csv, .yaml) or a built-in suite: {', '.join(BUILTIN)}."),
    k: int = typer.Option(None, "--k", min=1, max=20, help="Runs per case (pass^k); default evals.k."),
    compare_to: Path = typer.Option(None, "--compare", help="An earlier report.json: show changes, exit 1 on a regression."),
    limit: int = typer.Option(None, "--limit", min=1, help="Run only the first N cases (Bitext dev default: evals.bitext_sample)."),
    out: Path = typer.Option(None, "--out", help="Report folder (default: evals.reports_dir/<suite>-<time>)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report's metrics as JSON."),
) -> None:
    """Run a suite end to end against the sandbox, k times per case; write report.json, report.md and charts."""
    settings = state(ctx).settings
    repeats = k or settings.evals.k
    if out is not None:
        output_folder(out)
    try:
        baseline = load_report(compare_to) if compare_to else None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        work_root = Path(settings.evals.work_dir) if settings.evals.work_dir else settings.evals_path / "work"
        work = work_root / f"{stamp}-{uuid.uuid4().hex[:6]}"
        from agent.runtime import Runtime  # heavy: loaded only when something runs

        runtime = Runtime.build(eval_settings(settings, work))
        try:
            chosen = load_suite(suite, runtime.settings, runtime.catalogue, runtime.registry.names(), limit)
            for row in chosen.loaded.invalid:
                typer.echo(f"invalid: {row}", err=True)
            if not chosen.loaded.cases:
                fail(f"{suite}: no valid cases to run")
            typer.echo(f"running {len(chosen.loaded.cases)} cases x {repeats} ({chosen.name}) ", err=True, nl=False)
            runs = EvalRunner(runtime, settings.evals.token_prices_per_1k).run(chosen.loaded.cases, repeats, _progress)
            metrics, summaries = summarise(chosen.loaded.cases, runs, repeats)
            report = Report(
                suite=chosen.name, source=chosen.source, k=repeats, generated_at=now_stamp(), versions=runtime.versions,
                metrics=metrics, cases=summaries, invalid=chosen.loaded.invalid, coverage=chosen.loaded.notes, runs=runs,
            )
        finally:
            runtime.engine.dispose()
            shutil.rmtree(work, ignore_errors=True)
        comparison = (
            compare(report, baseline, str(compare_to), settings.evals.metric_tolerance, settings.evals.case_tolerance) if baseline else None
        )
        if baseline is not None and baseline.suite != report.suite:
            typer.echo(f"warning: the baseline is suite {baseline.suite!r}, this run is {report.suite!r}; only shared case ids compare", err=True)
        reports = Path(settings.evals.reports_dir) if settings.evals.reports_dir else settings.evals_path / "reports"
        files = write_report(report, out or reports / f"{chosen.name}-{stamp}", comparison)
    except EVAL_ERRORS as exc:
        fail(str(exc))
    if as_json:
        echo_json({"metrics": report.metrics.model_dump(mode="json"), "files": [str(f) for f in files],
                   "comparison": comparison.model_dump(mode="json") if comparison else None})
    else:
        _print_summary(report, files, comparison)
    if comparison is not None and comparison.regressed:
        raise typer.Exit(FOUND_PROBLEMS)


@app.command("label")
@with_errors
def label(
    ctx: typer.Context,
    run_id: str = typer.Argument(..., help="The run a person handled."),
    template: str = typer.Option(..., "--template", help="What should have handled it: a template name, or escalate."),
    by: str = typer.Option(..., "--by", help="Who records this (agent name or id)."),
    reason: str = typer.Option(None, "--reason", help=f"For escalate: the right reason ({', '.join(REASONS)})."),
    slot: list[str] = typer.Option([], "--slot", help="A correct slot value, NAME=VALUE (repeatable)."),
    forbid: list[str] = typer.Option([], "--forbid", help="A tool that must not run for this ticket (repeatable)."),
    note: str = typer.Option(None, "--note", help="Free text; becomes the escalation's resolution."),
    resolve: bool = typer.Option(True, help="Also mark the run's open escalation resolved."),
) -> None:
    """Record the correct outcome of a run a person resolved or rejected (the input of `eval harvest`)."""
    if not by.strip():
        fail("--by is empty; say who records this")
    runtime = state(ctx).runtime()
    runtime.catalogue.get(template)
    for tool in forbid:
        runtime.registry.get(tool)
    if reason is not None and reason not in REASONS:
        fail(f"--reason {reason!r} is not one of {', '.join(REASONS)}")
    slots = {}
    for item in slot:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail(f"--slot {item!r}: write NAME=VALUE")
        if name.strip() not in runtime.catalogue.get(template).slots:
            fail(f"--slot {name.strip()!r}: template {template} has no such slot ({', '.join(runtime.catalogue.get(template).slots)})")
        slots[name.strip()] = value.strip()
    outcome = record_outcome(runtime.engine, run_id, template, by, escalation_reason=reason, slots=slots, forbidden_tools=list(forbid), note=note, resolve=resolve)
    typer.echo(f"recorded: run {outcome.run_id} should be {outcome.template}" + (f" ({outcome.escalation_reason})" if outcome.escalation_reason else ""))


@app.command("harvest")
@with_errors
def harvest_cmd(
    ctx: typer.Context,
    since: str = typer.Option(..., "--since", help="Runs created at or after this ISO date or date-time."),
    out: Path = typer.Option(None, "--out", help="JSONL file to append to (default: evals.harvest_file)."),
) -> None:
    """Turn resolved escalations and rejected approvals with a recorded outcome into eval cases."""
    settings = state(ctx).settings
    from agent.db import make_engine

    engine = make_engine(settings.database_url)
    ensure_schema(engine, upgrade=settings.record.auto_migrate)
    target = output_file(out, settings) if out else (Path(settings.evals.harvest_file) if settings.evals.harvest_file else settings.evals_path / "harvested.jsonl")
    try:
        with exclusive(target):  # read the ids and append under one lock: two harvests write each case once
            found = harvest(engine, parse_since(since), existing_ids(target))
            written = write_cases_jsonl(target, found.cases)
    except EVAL_ERRORS as exc:
        fail(str(exc))
    typer.echo(f"harvested {written} new case(s) into {target}; {found.duplicates} duplicate(s) skipped")
    for run_id in found.unlabelled:
        typer.echo(f"  no recorded outcome for run {run_id}: `caseplan eval label {run_id} --template ... --by ...`")


@app.command("suites")
def suites() -> None:
    """The built-in suites (public data under evals.data_dir, read in place)."""
    typer.echo("bitext-dev    Bitext dev utterances: routing (and slots where a template has the entity's slot type)")
    typer.echo("abcd          one case per template that mirrors an ABCD subflow: the actions run must match kb.json")
    typer.echo("tau2-mock     tau2 mock tasks whose gold tool calls map to caseplan tools (configs/tau2_tools.yaml)")
    typer.echo("tau2-telecom  tau2 telecom small tasks, same mapping; the rest are listed as out of scope")
