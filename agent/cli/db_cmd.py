"""`caseplan db ...`: the record database's schema version (Alembic migrations)."""

from __future__ import annotations

import typer
from sqlalchemy.engine import Engine

from agent.cli.common import state, with_errors
from agent.db import make_engine
from agent.schema import current_revision, ensure_schema, head_revision

app = typer.Typer(help="Record database schema: show and upgrade its version.", no_args_is_help=True)


def _database(ctx: typer.Context, *, read_only: bool) -> tuple[Engine, str | None]:
    engine = make_engine(state(ctx).settings.database_url, read_only=read_only)
    with engine.connect() as conn:
        return engine, current_revision(conn)


@app.command("current")
@with_errors
def current(ctx: typer.Context) -> None:
    """The database's schema revision and the one this caseplan reads."""
    _, found = _database(ctx, read_only=True)
    head = head_revision()
    typer.echo(f"database: {found or 'unversioned'}   caseplan reads: {head}{'' if found == head else '   (run `caseplan db upgrade`)'}")


@app.command("upgrade")
@with_errors
def upgrade(ctx: typer.Context) -> None:
    """Migrate the record database to the newest schema (a new one is created)."""
    engine, before = _database(ctx, read_only=False)
    after = ensure_schema(engine)
    typer.echo(f"schema {before or 'unversioned'} -> {after}" if before != after else f"schema already at {after}")
