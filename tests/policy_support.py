"""Shared set-up for the policy tests: a runtime that routes and plans without the local model
(nearest-neighbour routing, deterministic slots), so hostile tickets run in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlmodel import select

from agent.record import SideEffect
from agent.runtime import Runtime
from tests.conftest import make_settings
from tools.sandbox.models import SandboxOutboxEmail, SandboxResetRequest
from tools.sandbox.seed import seed_demo

FAST = {"CASEPLAN__ROUTER__USE_MODEL_TIEBREAK": "false"}


def fast_runtime(root: Path, embedder: Any, local_model: Any, **env: str) -> Runtime:
    """The real runtime; the slot filler uses only patterns, ticket fields and context."""
    built = Runtime.build(make_settings(root, **FAST, **env), embedder=embedder, local_model=local_model)
    built.planner.filler.model = None  # optional model-only slots stay empty instead of asking the local model
    seed_demo(built.sandbox)
    return built


def side_effects(runtime: Runtime, run_id: str | None = None) -> list[str]:
    """Tools whose side effect really happened (the ledger's succeeded calls), optionally for one run."""
    query = select(SideEffect.tool).where(SideEffect.status == "succeeded")
    if run_id is not None:
        query = query.where(SideEffect.run_id == run_id)
    with runtime.engine.connect() as conn:
        return sorted(conn.execute(query).scalars())


def sandbox_resets(runtime: Runtime) -> tuple[int, int]:
    """Reset requests and mails the sandbox identity provider holds."""
    with runtime.sandbox.session() as session:
        return len(session.exec(select(SandboxResetRequest)).all()), len(session.exec(select(SandboxOutboxEmail)).all())
