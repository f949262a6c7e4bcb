"""`caseplan serve`, `caseplan worker` and `caseplan keys ...`: the HTTP service and its keys."""

from __future__ import annotations

import signal
import threading

import typer

from agent.cli.common import echo_json, fail, state, with_errors
from agent.cli.run_cmd import ensure_demo_data
from agent.db import make_engine
from agent.logging import configure_logging
from agent.schema import ensure_schema

keys_app = typer.Typer(help="API keys for the HTTP service: create, list, revoke.", no_args_is_help=True)


def _keys(ctx: typer.Context):  # noqa: ANN202 (KeyStore, imported lazily)
    from agent.service.keys import KeyStore

    engine = make_engine(state(ctx).settings.database_url)
    ensure_schema(engine, upgrade=state(ctx).settings.record.auto_migrate)
    return KeyStore(engine)


@keys_app.command("create")
@with_errors
def keys_create(
    ctx: typer.Context,
    role: str = typer.Option(..., "--role", help="platform | agent | auditor | admin"),
    name: str = typer.Option(..., "--name", help="Who or what uses the key (shown in claims and approvals)."),
) -> None:
    """Create a key and print its secret once; only its hash is stored."""
    from agent.service.keys import KeyStoreError

    try:
        row, secret = _keys(ctx).create(role, name)
    except KeyStoreError as exc:
        fail(str(exc))
    typer.echo(f"{row.id}  role={row.role}  name={row.name}")
    typer.echo(secret)


@keys_app.command("list")
@with_errors
def keys_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Keys with their roles (never their secrets)."""
    rows = _keys(ctx).list()
    if as_json:
        echo_json([row.model_dump(mode="json", exclude={"secret_hash"}) for row in rows])
        return
    for row in rows:
        typer.echo(f"{row.id}  {row.role:<8}  {row.name}  {'revoked ' + row.revoked_at.isoformat() if row.revoked_at else 'active'}")


@keys_app.command("revoke")
@with_errors
def keys_revoke(ctx: typer.Context, key_id: str = typer.Argument(..., help="The key id (key_...), not the secret.")) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    from agent.service.keys import KeyStoreError

    try:
        row = _keys(ctx).revoke(key_id)
    except KeyStoreError as exc:
        fail(str(exc))
    typer.echo(f"{row.id} revoked")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")

    @app.command("serve")
    @with_errors
    def serve(
        ctx: typer.Context,
        host: str = typer.Option(None, help="Default: service.host."),
        port: int = typer.Option(None, min=1, max=65535, help="Default: service.port."),
        workers: int = typer.Option(None, min=0, max=64, help="In-process worker threads (default: service.workers)."),
    ) -> None:
        """Run the HTTP API and console under uvicorn (OpenAPI at /docs)."""
        import uvicorn

        from agent.service.app import create_app

        settings = state(ctx).settings
        configure_logging(settings.logging, force_json=True)
        runtime = state(ctx).runtime()
        ensure_demo_data(runtime.sandbox)  # zero set-up, as `caseplan run`: the sandbox tools have customers
        app = create_app(runtime, workers=workers)
        uvicorn.run(app, host=host or settings.service.host, port=port if port is not None else settings.service.port, log_config=None)

    @app.command("worker")
    @with_errors
    def worker(ctx: typer.Context, threads: int = typer.Option(1, min=1, max=64, help="Worker threads in this process.")) -> None:
        """Drain the work queue without serving HTTP (run as many as you like, on any machine)."""
        from agent.runner import Runner
        from agent.service.metrics import Metrics
        from agent.service.notify import CompletionNotifier
        from agent.service.queue import WorkQueue
        from agent.service.worker import Worker, WorkerPool

        settings = state(ctx).settings
        configure_logging(settings.logging, force_json=True)
        runtime = state(ctx).runtime()
        ensure_demo_data(runtime.sandbox)
        queue = WorkQueue(runtime.engine, settings.service.lease_s)
        notifier = CompletionNotifier.from_settings(settings.service.webhook)
        runner, metrics = Runner(runtime), Metrics()
        pool = WorkerPool([Worker(runner, queue, settings.service, notifier, metrics) for _ in range(threads)])
        done = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: done.set())
        pool.start()
        done.wait()
        pool.close()
