"""The constrained executor: runs only steps of the plan that passed the check, one at a time.

It never chooses a tool. For each step it refuses anything not in the checked plan,
resolves references to earlier outputs, validates the arguments against the tool's input
model, derives an idempotency key from (run id, step id, arguments), skips side effects the
ledger has already seen, asks the policy gate about every side effect right before making it,
enforces a per-step timeout on tools that wait on the outside world (in-process tools are
called directly), and retries transient errors only.
"""

from __future__ import annotations

import contextvars
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Literal, Protocol

import structlog
from pydantic import BaseModel, ValidationError

from agent.record import SideEffectLedger
from agent.settings import ExecutorSettings
from plans.models import Plan, Step, canonical_json
from plans.refs import SlotRef, StepRef, lookup_path, substitute
from policies.engine import GateContext, GateRequest, StepDecision
from tools.base import Tool, ToolContext, ToolError
from tools.registry import ToolRegistry
from tools.resilience import RetryPolicy, run_with_retries

log = structlog.get_logger(__name__)

StepStatus = Literal["succeeded", "deduplicated", "failed", "rejected"]


class SideEffectGate(Protocol):
    """Judges one side effect from real values, right before it happens (the policy engine)."""

    def gate(self, request: GateRequest) -> StepDecision: ...


class ExecutionRefused(RuntimeError):
    """The executor was asked to run something that is not the checked plan."""


class StepResult(BaseModel):
    step_id: str
    tool: str
    status: StepStatus
    args: dict[str, Any] | None = None
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    idempotency_key: str | None = None
    side_effects: bool = False
    duration_ms: float = 0.0
    policy: StepDecision | None = None  # the gate's decision, for side effects

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "deduplicated")


def idempotency_key(run_id: str, step_id: str, args: Mapping[str, Any]) -> str:
    return hashlib.sha256(f"{run_id}\n{step_id}\n{canonical_json(dict(args))}".encode()).hexdigest()


class Executor:
    def __init__(
        self,
        registry: ToolRegistry,
        ledger: SideEffectLedger,
        settings: ExecutorSettings,
        *,
        gate: SideEffectGate | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        self.gate = gate
        self.ledger = ledger
        self.settings = settings
        self.retry_policy = RetryPolicy(
            max_attempts=settings.max_attempts, backoff_base_s=settings.backoff_base_s, backoff_max_s=settings.backoff_max_s
        )
        self.sleep = sleep

    def run_step(
        self,
        plan: Plan,
        approved_hash: str,
        step: Step,
        outputs: Mapping[str, Mapping[str, Any]],
        run_id: str,
        context: GateContext | None = None,
    ) -> StepResult:
        """Run one step of a checked plan; raises ExecutionRefused for anything else. `context`
        is what the gate needs to know about the run (ticket, approvals, guard flags)."""
        if plan.hash != approved_hash:
            raise ExecutionRefused("the plan changed after it was checked; refusing to execute it")
        if step not in plan.steps:
            raise ExecutionRefused(f"step {step.id!r} is not in the validated plan")
        tool = self.registry.get(step.tool)
        earlier = {s.id for s in plan.steps[: plan.steps.index(step)]}
        try:
            args = self._resolve(step, outputs, earlier)
            validated = tool.input_model.model_validate(args)
        except (ValidationError, LookupError) as exc:
            return StepResult(
                step_id=step.id,
                tool=step.tool,
                status="rejected",
                error={"kind": "invalid_arguments", "message": _describe(exc), "status_code": None},
                side_effects=tool.side_effects,
            )
        key = idempotency_key(run_id, step.id, args)
        base = StepResult(step_id=step.id, tool=step.tool, status="failed", args=args, idempotency_key=key, side_effects=tool.side_effects)
        if tool.side_effects:
            seen = self.ledger.get(key)
            if seen is not None and seen.status == "succeeded":
                log.info("side effect deduplicated", run_id=run_id, step=step.id, tool=step.tool)
                return base.model_copy(update={"status": "deduplicated", "output": seen.output})
            if self.gate is not None:
                request = GateRequest(plan, step, args, outputs, run_id, key, context or GateContext())
                decision = self.gate.gate(request)
                base = base.model_copy(update={"policy": decision})
                if decision.decision != "allow":
                    log.warning("side effect blocked", run_id=run_id, step=step.id, tool=step.tool, rule=decision.rule_id)
                    message = f"blocked by policy rule {decision.rule_id}: {decision.reason}"
                    error = {"kind": "denied", "message": message, "status_code": None, "rule_id": decision.rule_id}
                    return base.model_copy(update={"status": "rejected", "error": error})
        started = time.perf_counter()
        result = self._call_with_retries(tool, validated, ToolContext(run_id, step.id, key), base)
        return result.model_copy(update={"duration_ms": round((time.perf_counter() - started) * 1000, 3)})

    def _call_with_timeout(self, tool: Tool, args: BaseModel, ctx: ToolContext) -> Any:
        """Run the call in a thread of its own (with the caller's log context) and stop waiting
        after the step timeout. Not a fixed pool: a call that outlives its timeout (adapters end
        theirs by their own HTTP deadline) must not hold a slot that the next step, or another
        worker's run, would queue behind until its own timeout passed without a call made."""
        future: Future[Any] = Future()

        def call() -> None:
            try:
                future.set_result(tool.invoke(args, ctx))
            except BaseException as exc:  # noqa: BLE001 (handed to the waiting caller, which re-raises it)
                future.set_exception(exc)

        threading.Thread(target=contextvars.copy_context().run, args=(call,), name=f"caseplan-step-{tool.name}", daemon=True).start()
        try:
            return future.result(timeout=self.settings.step_timeout_s)
        except FutureTimeout:
            raise ToolError("transient", f"{tool.name} timed out after {self.settings.step_timeout_s}s") from None

    def _resolve(self, step: Step, outputs: Mapping[str, Mapping[str, Any]], earlier: set[str]) -> dict[str, Any]:
        def value(ref: StepRef | SlotRef) -> Any:
            if isinstance(ref, SlotRef) or ref.step_id not in earlier:
                raise LookupError(f"{step.id}: reference {ref} does not name an earlier step")
            if ref.step_id not in outputs:
                raise LookupError(f"{step.id}: step {ref.step_id!r} has no output yet")
            try:
                return lookup_path(outputs[ref.step_id], ref.path)
            except KeyError as exc:
                raise LookupError(f"{step.id}: output of {ref.step_id!r} has no field {exc.args[0]!r}") from None

        return substitute(step.args, value)

    def _call_with_retries(self, tool: Tool, args: BaseModel, ctx: ToolContext, base: StepResult) -> StepResult:
        def attempt(_: int) -> dict[str, Any]:
            if tool.side_effects:
                self.ledger.begin(ctx.idempotency_key, ctx.run_id, ctx.step_id, tool.name)
            return self._call_once(tool, args, ctx)

        try:
            output, attempts = run_with_retries(attempt, self.retry_policy, sleep=self.sleep)
        except ToolError as exc:
            if tool.side_effects:
                self.ledger.finish(ctx.idempotency_key, error=exc.as_dict())
            return base.model_copy(update={"status": "failed", "error": exc.as_dict(), "attempts": exc.attempts})
        if tool.side_effects:
            self.ledger.finish(ctx.idempotency_key, output=output)
        return base.model_copy(update={"status": "succeeded", "output": output, "attempts": attempts})

    def _call_once(self, tool: Tool, args: BaseModel, ctx: ToolContext) -> dict[str, Any]:
        try:
            result = tool.invoke(args, ctx) if tool.in_process else self._call_with_timeout(tool, args, ctx)
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 (a tool bug must fail the step, not the run)
            log.exception("tool crashed", tool=tool.name, step=ctx.step_id)
            raise ToolError("permanent", f"{tool.name} crashed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, tool.output_model):
            try:
                result = tool.output_model.model_validate(result)
            except ValidationError as exc:
                raise ToolError("permanent", f"{tool.name} returned an invalid result: {_describe(exc)}") from exc
        return result.model_dump(mode="json")


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'input'}: {error['msg']}" for error in exc.errors()
        )
    return str(exc)
