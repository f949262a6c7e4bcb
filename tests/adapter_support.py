"""Shared by the adapter tests: the real executor (retry loop, ledger, idempotency keys) with
sleeps recorded instead of slept, the six failure scenarios every adapter is tested under,
and a compact view of the requests an adapter sent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import respx

from agent.db import make_engine
from agent.executor import Executor, StepResult
from agent.record import SideEffectLedger
from agent.settings import ExecutorSettings
from plans.models import Step
from tests.tooling_doubles import make_plan
from tools.base import Tool
from tools.registry import ToolRegistry

MAX_ATTEMPTS = 3
BACKOFF_BASE_S = 0.01


@dataclass
class Harness:
    executor: Executor
    ledger: SideEffectLedger
    sleeps: list[float]

    def run(self, *steps: Step, run_id: str = "run_adapter") -> list[StepResult]:
        """Run a plan's steps in order, as the graph does, feeding outputs forward."""
        plan = make_plan(*steps)
        outputs: dict[str, Any] = {}
        results = []
        for step in plan.steps:
            result = self.executor.run_step(plan, plan.hash, step, outputs, run_id)
            results.append(result)
            if not result.ok:
                break
            outputs[step.id] = result.output
        return results


def harness(tmp_path, *tools: Tool, engine=None) -> Harness:
    engine = engine or make_engine(f"sqlite:///{tmp_path / 'record.db'}")
    ledger = SideEffectLedger(engine)
    sleeps: list[float] = []
    settings = ExecutorSettings(max_attempts=MAX_ATTEMPTS, backoff_base_s=BACKOFF_BASE_S, backoff_max_s=0.05, step_timeout_s=5)
    return Harness(Executor(ToolRegistry(tools), ledger, settings, sleep=sleeps.append), ledger, sleeps)


@dataclass(frozen=True)
class Scenario:
    """Answers for the endpoint under test, attempt by attempt, and what the step should end as."""

    name: str
    answers: tuple[Any, ...]  # httpx.Response or an exception to raise
    status: str  # succeeded | failed
    attempts: int
    error_kind: str | None = None
    error_status: int | None = None
    error_text: str = ""
    retry_after: float | None = None


UNEXPECTED = {"results": [], "note": "not what was asked for"}


def scenarios(ok: Any, not_found: dict[str, Any], not_found_text: str, unexpected: Any = UNEXPECTED) -> list[Scenario]:
    """The cases the issue names (plus valid JSON of the wrong shape), for one endpoint whose good answer is `ok`."""

    def good() -> httpx.Response:
        return httpx.Response(200, json=ok)

    return [
        Scenario("success", (good(),), "succeeded", 1),
        Scenario(
            "429 with Retry-After then success",
            (httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "TooManyRequests"}), good()),
            "succeeded",
            2,
            retry_after=7.0,
        ),
        Scenario("500 twice then success", (httpx.Response(500, text="oops"), httpx.Response(500, text="oops"), good()), "succeeded", 3),
        Scenario(
            "timeout",
            tuple(httpx.ReadTimeout("read timed out") for _ in range(MAX_ATTEMPTS)),
            "failed",
            MAX_ATTEMPTS,
            "transient",
            None,
            "timed out",
        ),
        Scenario("404", (httpx.Response(404, json=not_found),), "failed", 1, "permanent", 404, not_found_text),
        Scenario(
            "malformed JSON",
            (httpx.Response(200, text='{"ticket": {"id": 10', headers={"Content-Type": "application/json"}),),
            "failed",
            1,
            "permanent",
            200,
            "not JSON",
        ),
        Scenario(
            "unexpected JSON",
            (httpx.Response(200, json=unexpected),),
            "failed",
            1,
            "permanent",
            200,
            "unexpected JSON",
        ),
    ]


def check_outcome(result: StepResult, scenario: Scenario, sleeps: list[float]) -> None:
    assert result.status == scenario.status, result.error
    assert result.attempts == scenario.attempts
    if scenario.error_kind:
        assert result.error["kind"] == scenario.error_kind
        assert result.error["status_code"] == scenario.error_status
        assert scenario.error_text in result.error["message"], result.error
    assert len(sleeps) == scenario.attempts - 1
    if scenario.retry_after is not None:
        assert sleeps == [scenario.retry_after], "Retry-After is honoured, not replaced by backoff"
    elif sleeps:
        assert all(BACKOFF_BASE_S / 2 <= delay <= 0.05 for delay in sleeps), sleeps


@dataclass(frozen=True)
class Sent:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    auth: str | None
    idempotency_key: str | None


def sent(router: respx.Router) -> list[Sent]:
    """Every request the adapter sent, in order, reduced to what the tests assert."""
    out = []
    for call in router.calls:
        request = call.request
        body = json.loads(request.content) if request.content else None
        out.append(
            Sent(
                request.method,
                request.url.path,
                dict(request.url.params),
                body,
                request.headers.get("authorization"),
                request.headers.get("idempotency-key"),
            )
        )
    return out
