"""Where tickets went and what their model calls cost, summarised by route from the run record."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from agent.record import Run, RunEvent


def route_key(run: Run) -> str:
    """`template via method`, e.g. `password_reset via nearest_neighbour`; runs never routed are `-`."""
    route = run.route or {}
    return f"{run.template or route.get('template') or 'none'} via {route.get('method', '-')}"


def stats_by_route(engine: Engine, limit: int = 1000) -> list[dict[str, Any]]:
    """Per route: runs, statuses, escalation reasons, model calls, tokens, cost, model latency."""
    with Session(engine) as session:
        runs = session.exec(select(Run).order_by(col(Run.created_at).desc()).limit(limit)).all()
        ids = [run.id for run in runs]
        calls = session.exec(select(RunEvent.run_id, RunEvent.payload).where(RunEvent.kind == "model_call", col(RunEvent.run_id).in_(ids))).all() if ids else []
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run_id, payload in calls:
        by_run[run_id].append(payload)
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[route_key(run)].append(run)
    summary = []
    for key, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        payloads = [p for run in members for p in by_run[run.id]]
        latencies = [float(p.get("latency_ms", 0)) for p in payloads]
        summary.append(
            {
                "route": key,
                "runs": len(members),
                "status": dict(Counter(run.status for run in members)),
                "escalation_reasons": dict(Counter(run.escalation_reason for run in members if run.escalation_reason)),
                "model_calls": len(payloads),
                "models": dict(Counter(str(p.get("model_id")) for p in payloads)),
                "prompt_tokens": sum(int(p.get("prompt_tokens", 0)) for p in payloads),
                "completion_tokens": sum(int(p.get("completion_tokens", 0)) for p in payloads),
                "cost_usd": round(sum(float(p.get("cost_usd", 0)) for p in payloads), 6),
                "model_latency_ms_p50": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
            }
        )
    return summary
