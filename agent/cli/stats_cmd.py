"""`caseplan stats`: tickets and model spend by route, from the run record."""

from __future__ import annotations

import typer

from agent.cli.common import echo_json, state, with_errors


def register(app: typer.Typer) -> None:
    @app.command("stats")
    @with_errors
    def stats(
        ctx: typer.Context,
        limit: int = typer.Option(1000, min=1, max=1_000_000, help="Most recent runs to summarise."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """Runs, escalation reasons, model calls, tokens and estimated cost per route."""
        from agent.db import make_engine
        from agent.stats import stats_by_route

        engine = make_engine(state(ctx).settings.database_url, read_only=True)
        rows = stats_by_route(engine, limit)
        if as_json:
            echo_json(rows)
            return
        if not rows:
            typer.echo("no runs recorded yet")
            return
        typer.echo(f"{'route':44} {'runs':>5} {'calls':>6} {'tokens':>8} {'cost $':>9}  escalations")
        for row in rows:
            tokens = row["prompt_tokens"] + row["completion_tokens"]
            reasons = ", ".join(f"{k} {v}" for k, v in row["escalation_reasons"].items()) or "-"
            typer.echo(f"{row['route'][:44]:44} {row['runs']:>5} {row['model_calls']:>6} {tokens:>8} {row['cost_usd']:>9.4f}  {reasons}")
