"""Liveness, readiness (database, model, retrieval backend) and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from agent.models.local import packaged_model_path
from agent.service.auth import context, require
from agent.service.context import ServiceContext
from agent.service.models import ApiKey
from agent.service.problems import PROBLEMS
from agent.service.schemas import Health
from tools.base import ToolContext

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(ctx: Annotated[ServiceContext, Depends(context)]) -> Response:
    """Ready when the database answers, the local model file is present and the knowledge index opens."""
    checks: dict[str, str] = {}
    try:
        with ctx.runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure as a check, never raises
        checks["database"] = f"error: {type(exc).__name__}"
    model = ctx.runtime.local_model
    try:
        path = model.path or packaged_model_path(model.settings.package)
        checks["model"] = "ok" if path.is_file() else f"error: model file not found: {path}"
    except Exception as exc:
        checks["model"] = f"error: {type(exc).__name__}: {exc}"[:200]
    try:
        tool = ctx.runtime.registry.get("knowledge_search")
        tool.invoke(tool.input_model.model_validate({"query": "readiness check"}), ToolContext("readyz", "readyz", "readyz"))
        checks["retrieval"] = "ok"
    except Exception as exc:
        checks["retrieval"] = f"error: {type(exc).__name__}: {exc}"[:200]
    ready = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if ready else "not_ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, **PROBLEMS})
def metrics(
    _: Annotated[ApiKey, Depends(require("auditor"))],
    ctx: Annotated[ServiceContext, Depends(context)],
) -> Response:
    """Prometheus text format: runs by outcome and template, latencies, tokens, queue depth."""
    return Response(ctx.metrics.render(), media_type="text/plain; version=0.0.4")
