"""`caseplan tools list | schema NAME`: the typed contracts plans may use."""

from __future__ import annotations

import typer

from agent.cli.common import echo_json, state, with_errors
from agent.tooling import registry_from_settings

app = typer.Typer(help="List tools and print their JSON Schemas.", no_args_is_help=True)


@app.command("list")
@with_errors
def list_tools(ctx: typer.Context) -> None:
    """Every registered tool, the adapter serving it, and whether it has side effects."""
    for tool in registry_from_settings(state(ctx).settings):
        marker = "side effects" if tool.side_effects else "read-only"
        typer.echo(f"  {tool.name:<18} {marker:<13} {tool.adapter:<14} {tool.description}")


@app.command("schema")
@with_errors
def schema(ctx: typer.Context, name: str, part: str = typer.Option("input", help="input | output | both")) -> None:
    """The JSON Schema of a tool's input (default), output, or both."""
    tool = registry_from_settings(state(ctx).settings).get(name)
    if part == "both":
        echo_json({"input": tool.input_model.model_json_schema(), "output": tool.output_model.model_json_schema()})
    else:
        echo_json((tool.output_model if part == "output" else tool.input_model).model_json_schema())
