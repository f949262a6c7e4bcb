"""The FastAPI application: routes, problem documents, body limit, request log, and the
worker threads that drain the queue while the server runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from agent.runtime import Runtime
from agent.service import console, problems
from agent.service.context import ServiceContext
from agent.service.middleware import BodyLimit, RequestLog
from agent.service.notify import CompletionNotifier
from agent.service.routes import approvals, escalations, ops, tickets
from agent.service.worker import Worker, WorkerPool


def create_app(runtime: Runtime, *, workers: int | None = None, notifier: CompletionNotifier | None = None) -> FastAPI:
    """An app over one runtime; `workers` overrides service.workers (0: another process drains the queue)."""
    settings = runtime.settings.service
    ctx = ServiceContext.build(runtime)
    notifier = notifier or CompletionNotifier.from_settings(settings.webhook)
    count = settings.workers if workers is None else workers

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        pool = WorkerPool([Worker(ctx.runner, ctx.queue, settings, notifier, ctx.metrics) for _ in range(count)])
        pool.start()
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="caseplan",
        version="1",
        summary="Support tickets in; checked plans, approvals and escalations out.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    problems.install(app)
    for module in (tickets, approvals, escalations, ops):
        app.include_router(module.router)
    app.include_router(console.router)
    console.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestLog, metrics=ctx.metrics)
    return app
