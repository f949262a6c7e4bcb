"""Runs eval cases end to end, k times each, against the sandbox in an isolated data folder.

The eval never touches the real platform: whatever adapters the user's configuration chooses,
the eval's copy of the settings serves every tool from the sandbox (and the local escalation
queue), and keeps its record, checkpoints and sandbox in its own folder. Catalogue, policies,
router and model settings are the user's: those are what an eval measures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel

from agent.evals.cases import EvalCase
from agent.evals.checks import CheckResult, score
from agent.evals.criteria import Observation, ToolCallRecord
from agent.runner import Runner, RunResult
from agent.runtime import Runtime
from agent.settings import Settings, ToolAdapterSettings
from agent.tickets import Ticket
from plans.models import Plan
from tools.sandbox.helpdesk import open_ticket
from tools.sandbox.seed import seed_demo

log = structlog.get_logger(__name__)


class CaseRun(BaseModel):
    """One of the k runs of one case."""

    case_id: str
    attempt: int
    passed: bool
    checks: list[CheckResult]
    observation: Observation


def eval_settings(settings: Settings, data_dir: Path) -> Settings:
    """The user's settings with every tool on the sandbox and every store in `data_dir`.

    PII masking is off in this throwaway record: the checks compare slot values and arguments
    as the customer wrote them, and nothing here leaves the folder."""
    data = settings.model_dump()
    data["data_dir"] = str(data_dir)
    data["database"] = {"url": None}
    data["sandbox"] = {"url": None}
    data["checkpoints"] = {**data["checkpoints"], "path": None}
    data["tools"]["adapters"] = ToolAdapterSettings().model_dump()
    data["record"] = {**data["record"], "mask_pii": False, "keep_originals": False, "auto_migrate": True}
    data["pii"] = {**data["pii"], "fingerprint_key_file": str(settings.fingerprint_key_path)}  # logs mask as the deployment's do
    return Settings.model_validate(data)


def _routed_plan(runtime: Runtime, run_id: str) -> Plan | None:
    """The routed template's plan (a later escalation plan replaces it in the state)."""
    for event in runtime.store.events(run_id):
        if event.kind == "plan" and event.payload.get("template") != "escalate":
            return Plan.model_validate(event.payload["plan"])
    return None


def _abcd_actions(runtime: Runtime, plan: Plan | None, result: RunResult) -> list[str]:
    if plan is None or plan.template not in runtime.catalogue.templates:
        return []
    actions = {step.id: step.abcd_action for step in runtime.catalogue.get(plan.template).steps}
    ran = [step["step_id"] for step in result.steps if step.get("status") in ("succeeded", "deduplicated")]
    return [actions[step_id] for step_id in ran if actions.get(step_id)]


def _model_usage(runtime: Runtime, run_id: str, prices: dict[str, float]) -> tuple[int, float]:
    tokens, cost = 0, 0.0
    for event in runtime.store.events(run_id):
        if event.kind == "model_call":
            used = int(event.payload.get("prompt_tokens", 0)) + int(event.payload.get("completion_tokens", 0))
            tokens += used
            cost += float(event.payload.get("cost_usd", 0.0)) + used / 1000 * prices.get(str(event.payload.get("model_id")), 0.0)
    return tokens, cost


def observe(runtime: Runtime, result: RunResult, latency_ms: float, prices: dict[str, float]) -> Observation:
    route = (result.route or {}).get("template") or "escalate"
    template = (result.plan or {}).get("template")
    tokens, cost = _model_usage(runtime, result.run_id, prices)
    plan = _routed_plan(runtime, result.run_id)
    escalation = result.escalation or {}
    return Observation(
        run_id=result.run_id,
        status=result.status,
        route=route,
        template=template,
        escalation_reason=escalation.get("reason") or ((result.route or {}).get("reason") if template == "escalate" else None),
        slots=plan.slots if plan else {},
        abcd_actions=_abcd_actions(runtime, plan, result),
        tool_calls=[ToolCallRecord.model_validate(step) for step in result.steps],
        reply=result.reply,
        citations=result.citations,
        latency_ms=round(latency_ms, 2),
        tokens=tokens,
        cost_usd=round(cost, 6),
        error=result.error,
    )


class EvalRunner:
    """Holds one runtime for the whole suite; the sandbox is reseeded before every run."""

    def __init__(self, runtime: Runtime, prices: dict[str, float] | None = None) -> None:
        self.runtime = runtime
        self.runner = Runner(runtime)
        self.prices = prices or {}

    def _file(self, case: EvalCase) -> Any:
        ticket = case.ticket
        if ticket.ticket_id is not None:
            return ticket
        ticket_id = open_ticket(self.runtime.sandbox, ticket.subject or ticket.text[:60], ticket.text, ticket.requester_email)
        return ticket.model_copy(update={"ticket_id": ticket_id})

    def run_case(self, case: EvalCase, attempt: int) -> CaseRun:
        seed_demo(self.runtime.sandbox, reset=True)
        ticket = self._file(case)
        started = time.perf_counter()
        result = self.runner.submit(ticket)
        latency = (time.perf_counter() - started) * 1000
        obs = observe(self.runtime, result, latency, self.prices)
        checks = score(case, obs)
        return CaseRun(case_id=case.id, attempt=attempt, passed=all(c.passed for c in checks), checks=checks, observation=obs)

    def warm_up(self) -> None:
        """Load the models outside the measurement, so the first ticket's latency is a ticket's."""
        self.runtime.router.route(Ticket(text="warm-up: what is the status of my ticket?"))

    def run(self, cases: list[EvalCase], k: int, progress: Callable[[CaseRun], None] | None = None) -> list[CaseRun]:
        self.warm_up()
        runs: list[CaseRun] = []
        for case in cases:
            for attempt in range(1, k + 1):
                run = self.run_case(case, attempt)
                log.info("eval run", case=case.id, attempt=attempt, passed=run.passed)
                runs.append(run)
                if progress:
                    progress(run)
        return runs
