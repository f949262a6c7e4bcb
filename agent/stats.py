"""Where tickets went and what their model calls cost, summarised by route from the run record."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy import Text, cast, select
from sqlalchemy.engine import Engine

from agent.record import Run, RunEvent


def route_key(run: Any) -> str:
    """`template via method`, e.g. `password_reset via nearest_neighbour`; runs never routed are `-`."""
    route = run.route if isinstance(run.route, dict) else {}
    return f"{run.template or route.get('template') or 'none'} via {route.get('method', '-')}"


def _json(text: str | None) -> Any:  # noqa: ANN401 (any JSON value)
    """A stored JSON column read as text: None when it is not JSON (edited outside caseplan)."""
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def stats_by_route(engine: Engine, limit: int = 1000) -> list[dict[str, Any]]:
    """Per route: runs, statuses, escalation reasons, model calls, tokens, cost, model latency.
    JSON is read as text and decoded here, and odd values count as nothing, so a row edited
    outside caseplan cannot stop the summary."""
    runs_table, events = Run.__table__, RunEvent.__table__
    columns = (runs_table.c.id, runs_table.c.status, runs_table.c.template, runs_table.c.escalation_reason, cast(runs_table.c.route, Text).label("route"))
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).order_by(runs_table.c.created_at.desc()).limit(limit)).all()
        runs = [SimpleNamespace(**{**row._mapping, "route": _json(row.route)}) for row in rows]
        ids = [run.id for run in runs]
        calls = (
            conn.execute(select(events.c.run_id, cast(events.c.payload, Text)).where(events.c.kind == "model_call", events.c.run_id.in_(ids))).all()
            if ids
            else []
        )
    by_run: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run_id, payload in calls:
        decoded = _json(payload)
        if isinstance(decoded, dict):
            by_run[run_id].append(decoded)
    groups: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        groups[route_key(run)].append(run)
    summary = []
    for key, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        payloads = [p for run in members for p in by_run[run.id]]
        latencies = [_number(p.get("latency_ms"), float) for p in payloads]
        summary.append(
            {
                "route": key,
                "runs": len(members),
                "status": dict(Counter(run.status for run in members)),
                "escalation_reasons": dict(Counter(run.escalation_reason for run in members if run.escalation_reason)),
                "model_calls": len(payloads),
                "models": dict(Counter(str(p.get("model_id")) for p in payloads)),
                "prompt_tokens": sum(_number(p.get("prompt_tokens"), int) for p in payloads),
                "completion_tokens": sum(_number(p.get("completion_tokens"), int) for p in payloads),
                "cost_usd": round(sum(_number(p.get("cost_usd"), float) for p in payloads), 6),
                "model_latency_ms_p50": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
            }
        )
    return summary


def _number(value: Any, kind: type) -> Any:  # noqa: ANN401 (an int or a float)
    """A recorded count or amount; anything that is not a number counts as 0."""
    return kind(value) if isinstance(value, int | float) and not isinstance(value, bool) else kind(0)
