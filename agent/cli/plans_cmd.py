"""`caseplan plans list | show NAME | validate [PATH...]`."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml

from agent.cli.common import USAGE_ERROR, echo_json, fail, state, with_errors
from agent.tooling import registry_from_settings
from plans.catalogue import PACKAGED_TEMPLATES, check_files, load_catalogue

app = typer.Typer(help="Inspect and validate plan templates.", no_args_is_help=True)


@app.command("list")
@with_errors
def list_templates(ctx: typer.Context) -> None:
    """Every template in the catalogue, with its steps."""
    settings = state(ctx).settings
    catalogue = load_catalogue([Path(p) for p in settings.catalogue.paths], registry_from_settings(settings))
    typer.echo(f"catalogue version {catalogue.version}")
    for template in catalogue.templates.values():
        steps = " -> ".join(step.tool for step in template.steps)
        typer.echo(f"  {template.name:<17} v{template.version}  {steps}")


@app.command("show")
@with_errors
def show(ctx: typer.Context, name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One template as YAML (or JSON)."""
    settings = state(ctx).settings
    template = load_catalogue([Path(p) for p in settings.catalogue.paths], registry_from_settings(settings)).get(name)
    data = template.model_dump(mode="json", exclude_defaults=False)
    if as_json:
        echo_json(data)
    else:
        typer.echo(f"# {template.source}")
        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())


@app.command("validate")
@with_errors
def validate(ctx: typer.Context, paths: list[Path] = typer.Argument(None, help="Template files or folders.")) -> None:
    """Check templates; every problem names the file, the step and what is wrong (exit 2)."""
    settings = state(ctx).settings
    targets = paths or [PACKAGED_TEMPLATES, *(Path(p) for p in settings.catalogue.paths)]
    missing = [str(p) for p in targets if not p.exists()]
    if missing:
        for path in missing:
            typer.echo(f"error: {path}: no such file or folder", err=True)
        raise typer.Exit(USAGE_ERROR)
    templates, problems = check_files(targets, registry_from_settings(settings))
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    for template in templates:
        typer.echo(f"ok: {template.source} ({template.name} v{template.version})")
    if not templates and not problems:
        fail(f"no template files (*.yaml) in {', '.join(str(p) for p in targets)}: nothing was checked")
    if problems:
        raise typer.Exit(USAGE_ERROR)
