"""Human-readable output of runs: route, plan, each step, reply, run id."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import typer

from agent.runner import RunResult


def _short(value: Any, limit: int = 110) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def print_result(result: RunResult) -> None:
    route = result.route or {}
    if route:
        target = route.get("template") or "none fits"
        typer.echo(f"route:  {target} (confidence {route.get('confidence', 0):.2f}, {route.get('method')})")
        if route.get("reason"):
            typer.echo(f"        reason: {route['reason']}{' - ' + route['detail'] if route.get('detail') else ''}")
    if result.escalation:
        esc = result.escalation
        typer.echo(f"escalation: {esc['reason']} at {esc['stage']}{' - ' + esc['detail'] if esc.get('detail') else ''}")
    if result.plan:
        plan = result.plan
        typer.echo(f"plan:   {plan['template']} v{plan['template_version']}  hash {result.plan_hash}")
        for number, step in enumerate(plan["steps"], start=1):
            typer.echo(f"  {number}. {step['id']:<20} {step['tool']:<18} {_short(step['args'], 70)}")
    if result.steps:
        typer.echo("steps:")
        for step in result.steps:
            detail = step.get("output") if step["status"] in ("succeeded", "deduplicated") else step.get("error")
            typer.echo(f"  - {step['step_id']:<20} {step['status']:<12} {_short(detail, 90)}")
    if result.pending_approval:
        typer.echo("waiting for approval:")
        for item in result.pending_approval:
            typer.echo(f"  - {item['step_id']} ({item['tool']}): {item['reason']}")
    if result.reply:
        typer.echo("reply:")
        for paragraph in result.reply.split("\n\n"):
            typer.echo(textwrap.fill(paragraph, width=96, initial_indent="  ", subsequent_indent="  "))
    if result.error:
        typer.echo(f"error:  {result.error}")
    typer.echo(f"status: {result.status}")
    typer.echo(f"run id: {result.run_id}")
