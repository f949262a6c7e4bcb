"""`caseplan tools list | schema NAME`: the typed contracts plans may use."""

from __future__ import annotations

from typing import Any

import typer
from pydantic import BaseModel

from agent.cli.common import echo_json, fail, state, with_errors
from agent.tooling import registry_from_settings

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"  # what Pydantic generates

app = typer.Typer(help="List tools and print their JSON Schemas.", no_args_is_help=True)


@app.command("list")
@with_errors
def list_tools(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Also print each tool's JSON Schemas.")) -> None:
    """Every registered tool, the adapter serving it, and whether it has side effects."""
    registry = registry_from_settings(state(ctx).settings)
    if as_json:
        echo_json([tool.describe() for tool in registry])
        return
    for tool in registry:
        marker = "side effects" if tool.side_effects else "read-only"
        typer.echo(f"  {tool.name:<18} {marker:<13} {tool.adapter:<14} {tool.description}")


@app.command("schema")
@with_errors
def schema(ctx: typer.Context, name: str, part: str = typer.Option("input", help="input | output | both")) -> None:
    """The JSON Schema of a tool's input (default), output, or both."""
    if part not in ("input", "output", "both"):
        fail(f"--part must be input, output or both, not {part!r}")
    tool = registry_from_settings(state(ctx).settings).get(name)
    if part == "both":
        echo_json({"input": _document(tool.input_model), "output": _document(tool.output_model)})
    else:
        echo_json(_document(tool.output_model if part == "output" else tool.input_model))


def _document(model: type[BaseModel]) -> dict[str, Any]:
    """A standalone JSON Schema document: it names its dialect, so validators need no guessing."""
    return {"$schema": JSON_SCHEMA_DIALECT, **model.model_json_schema()}
