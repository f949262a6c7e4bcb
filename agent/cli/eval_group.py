"""`caseplan eval ...`: measurement commands. Each evaluation registers itself on `app`."""

from __future__ import annotations

import typer

app = typer.Typer(help="Measure caseplan on your own tickets and on public datasets.", no_args_is_help=True)
