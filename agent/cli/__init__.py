"""The `caseplan` command line. Each command group lives in its own module."""

from __future__ import annotations

import typer

from agent.cli import (
    audit_cmd,
    db_cmd,
    eval_group,
    eval_retrieval_cmd,
    eval_routing_cmd,  # noqa: F401  (registers `eval routing` on eval_group.app)
    eval_run_cmd,  # noqa: F401  (registers `eval run|label|harvest|suites` on eval_group.app)
    ingest_cmd,
    plans_cmd,
    policies_cmd,
    replay_cmd,
    run_cmd,
    service_cmd,
    stats_cmd,
    tools_cmd,
)
from agent.cli.common import State

app = typer.Typer(
    name="caseplan",
    help="Support automation you can audit: tickets become checked plans, run by a constrained executor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _options(
    ctx: typer.Context,
    config: str = typer.Option(None, "--config", "-c", help="Config file (default: configs/default.yaml; env CASEPLAN_CONFIG)."),
) -> None:
    ctx.obj = State(config_path=config)


run_cmd.register(app)
app.add_typer(plans_cmd.app, name="plans")
app.add_typer(tools_cmd.app, name="tools")
replay_cmd.register(app)
stats_cmd.register(app)
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(db_cmd.app, name="db")
policies_cmd.register(app)
app.add_typer(eval_group.app, name="eval")
service_cmd.register(app)
ingest_cmd.register(app)
eval_retrieval_cmd.register()


def main() -> None:
    app()
