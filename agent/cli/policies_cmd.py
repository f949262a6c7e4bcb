"""`caseplan policies validate [PATH...] | explain RUN_ID` and `caseplan scan [LOG...]`."""

from __future__ import annotations

from pathlib import Path

import typer

from agent.audit import AuditSource, load_run
from agent.cli.common import FOUND_PROBLEMS, USAGE_ERROR, echo_json, fail, state, with_errors
from agent.tooling import registry_from_settings
from plans.catalogue import load_catalogue
from policies.explain import explain_events
from policies.loader import PolicyError, load_policies
from policies.scan import DEFAULT_KINDS, scan_files, scan_record

app = typer.Typer(help="Check policy files and explain the decisions of a run.", no_args_is_help=True)


@app.command("validate")
@with_errors
def validate(ctx: typer.Context, paths: list[Path] = typer.Argument(None, help="Policy files (default: the configured ones).")) -> None:
    """Check the packaged policy and the given (or configured) files; problems name file, line and field (exit 2)."""
    settings = state(ctx).settings
    targets = paths if paths else [Path(p) for p in settings.policies.files]
    missing = [str(p) for p in targets if not p.is_file()]
    if missing:
        fail(f"no such policy file, or not a regular file: {', '.join(missing)}")
    registry = registry_from_settings(settings)
    catalogue = load_catalogue([Path(p) for p in settings.catalogue.paths], registry)
    try:
        merged = load_policies(targets, registry, catalogue.names())
    except PolicyError as exc:
        for problem in exc.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(USAGE_ERROR) from None
    for source in merged.sources:
        typer.echo(f"ok: {source}")
    typer.echo(
        f"policy version {merged.version}: {len(merged.rules)} rules, {len(merged.preconditions)} preconditions, "
        f"{len(merged.rate_limits)} rate limits, {len(merged.human_topics)} topics"
    )


@app.command("explain")
@with_errors
def explain(ctx: typer.Context, run_id: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every policy decision of a run: the phase, the step, the rule that decided and why."""
    run = load_run(AuditSource.open(state(ctx).settings), run_id)
    lines = explain_events(run.events)
    if as_json:
        echo_json({"run_id": run.id, "status": run.status, "decisions": [line.model_dump() for line in lines]})
        return
    typer.echo(f"run {run.id}  status {run.status}  template {run.template or '-'}  escalation {run.escalation_reason or '-'}")
    for line in lines:
        step = f"{line.step_id} ({line.tool})" if line.step_id else "-"
        typer.echo(f"  #{line.seq:<4} {line.phase:<13} {line.decision:<15} {step:<36} {line.rule_id}: {line.reason}")
        for check in [c for c in line.checks if c["rule_id"] != line.rule_id]:  # the other rules that had a say
            typer.echo(f"{'':>74}{check['decision']:<15} {check['rule_id']}: {check['reason']}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="policies")

    @root.command("scan")
    @with_errors
    def scan(
        ctx: typer.Context,
        logs: list[Path] = typer.Argument(None, help="Log files to scan as well."),
        record: bool = typer.Option(True, "--record/--no-record", help="Scan the run record database."),
        kind: list[str] = typer.Option(list(DEFAULT_KINDS), "--kind", help="PII kinds to look for."),
    ) -> None:
        """Look for unmasked e-mail addresses, phone and card numbers in logs and the stored record (exit 1 if any)."""
        unknown = sorted(set(kind) - {"email", "phone", "card", "iban", "national_id"})
        if unknown:
            fail(f"unknown PII kind: {', '.join(unknown)}")
        missing = [str(p) for p in logs or [] if not p.is_file()]
        if missing:
            fail(f"no such log file, or not a regular file: {', '.join(missing)}")
        findings = scan_files(logs or [], kind)
        if record:
            findings += scan_record(AuditSource.open(state(ctx).settings).engine, kind)
        for finding in findings:
            typer.echo(f"{finding.where}: unmasked {finding.kind}: {finding.excerpt}")
        typer.echo(f"{len(findings)} unmasked value(s) found" if findings else "no unmasked PII found")
        if findings:
            raise typer.Exit(FOUND_PROBLEMS)
