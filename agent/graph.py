"""The LangGraph StateGraph: intake -> route -> plan -> check -> execute* -> reply -> done.

Anything that cannot proceed safely sets `escalation` (a typed reason) and goes back to
`plan`, which then compiles the `escalate` template: escalation is itself a checked plan
with a typed tool call. A step that needs approval pauses at `approval` with an interrupt.
Policy runs at `intake` (the input guard: a flagged ticket goes straight to a person), at
`check` (the whole plan), inside the executor right before each side effect (the gate), and
at `reply` (the output guard); every decision is a `policy_decision` event naming its rule.
Every node appends its events to the run record in one transaction (with any change to the
run row), so a node's record lands whole or not at all; a tool call is recorded before it is
made, so a crash mid-call shows in the record.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import structlog
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from agent.executor import ExecutionRefused, Executor
from agent.models.local import ModelUnavailable
from agent.ownership import check_lease
from agent.planner import Planner
from agent.record import NewEvent, RunStore
from agent.reply import compose_reply
from agent.routing import ESCALATE_TEMPLATE, RouteDecision, Router
from agent.tickets import Ticket
from plans.models import Plan
from policies.engine import GateContext, PolicyEngine
from policies.pii import mask_text

log = structlog.get_logger(__name__)


class RunState(TypedDict, total=False):
    run_id: str
    ticket: dict[str, Any]
    route: dict[str, Any] | None
    escalation: dict[str, Any] | None
    plan: dict[str, Any] | None
    plan_hash: str | None
    verdict: dict[str, Any] | None
    guard: dict[str, Any] | None
    approved_rules: dict[str, list[str]]  # step id -> the needs-approval rules a person approved
    received_at: str | None  # when the run arrived (ISO): what a replay judges rate limits at
    step_index: int
    outputs: dict[str, Any]
    results: list[dict[str, Any]]
    reply: dict[str, Any] | None
    status: str
    error: str | None


@dataclass
class GraphDeps:
    store: RunStore
    router: Router
    planner: Planner
    policy: PolicyEngine
    executor: Executor


def escalation_summary(ticket: Ticket, reason: str, detail: str) -> str:
    text = " ".join(ticket.full_text.split())
    excerpt = text if len(text) <= 600 else text[:600] + "..."
    summary = f"Escalated ({reason}){': ' + detail if detail else ''}. Customer wrote: {excerpt}"
    return mask_text(summary)[:1200]  # the agent opens the ticket for the originals


def _escalate(reason: str, detail: str, stage: str) -> dict[str, Any]:
    return {"escalation": {"reason": reason, "detail": detail[:500], "stage": stage}, "plan": None, "plan_hash": None}


def build_graph(deps: GraphDeps, checkpointer: Any) -> Any:
    store = deps.store

    @functools.lru_cache(maxsize=256)
    def plan_from_state(digest: str, body: str) -> Plan:
        """Parse a plan once per hash; the state carries it as plain data."""
        built = Plan.model_validate_json(body)
        if built.hash != digest:
            raise ExecutionRefused("plan in the run state does not match its hash")
        return built

    def current_plan(state: RunState) -> Plan:
        return plan_from_state(state["plan_hash"], json.dumps(state["plan"]))

    def record(state: RunState, node: str, events: list[tuple[str, dict[str, Any]]], **run_fields: Any) -> None:
        """A node's events (and run-row change) in one transaction, by a driver that still owns the run."""
        check_lease()
        store.append_events(state["run_id"], [NewEvent(kind, node, payload) for kind, payload in events], **run_fields)

    def intake(state: RunState) -> dict[str, Any]:
        report = deps.policy.guardian.inspect_ticket(state["ticket"])
        decision = "deny" if report.flagged else ("needs_approval" if report.topics else "allow")
        guard = {"phase": "input_guard", "decision": decision, **report.model_dump(mode="json")}
        record(state, "intake", [("intake", {"ticket": state["ticket"], "guard": guard})], status="running")
        fresh = {"escalation": None, "plan": None, "step_index": 0, "outputs": {}, "results": [], "status": "running"}
        fresh |= {"guard": report.model_dump(mode="json"), "approved_rules": {}}
        if report.flagged:
            return fresh | _escalate("injection_suspected", f"input guard: {report.summary()}", "intake")
        if report.topics:
            return fresh | _escalate("policy_denied", f"topic for a person: {report.summary()}", "intake")
        return fresh

    def route(state: RunState) -> dict[str, Any]:
        ticket = Ticket.model_validate(state["ticket"])
        try:
            decision = deps.router.route(ticket)
        except ModelUnavailable as exc:
            decision = RouteDecision(template=None, confidence=0.0, method="rule", reason="model_unavailable", detail=str(exc))
        body = decision.model_dump(mode="json", exclude={"model_calls"})
        record(state, "route", [*(("model_call", call.model_dump(mode="json")) for call in decision.model_calls), ("route", body)])
        update: dict[str, Any] = {"route": body}
        if decision.template is None:
            update |= _escalate(decision.reason or "low_confidence", decision.detail, "route")
        return update

    def plan(state: RunState) -> dict[str, Any]:
        ticket = Ticket.model_validate(state["ticket"])
        escalation = state.get("escalation")
        route_info = state.get("route") or {}
        template = ESCALATE_TEMPLATE if escalation else route_info["template"]
        events: list[tuple[str, dict[str, Any]]] = [("escalation", escalation)] if escalation else []
        reason = escalation["reason"] if escalation else route_info.get("reason")
        detail = escalation["detail"] if escalation else ""
        context = {"reason": reason, "summary": escalation_summary(ticket, reason or "customer_request", detail)}
        if reason in ("injection_suspected", "identity_not_verified", "policy_denied"):
            context["priority"] = "high"
        try:
            outcome = deps.planner.plan(template, ticket, context)
        except ModelUnavailable as exc:
            record(state, "plan", events)
            return _escalate("model_unavailable", str(exc), "plan") if not escalation else _fail(state, str(exc))
        events += [("model_call", call.model_dump(mode="json")) for call in outcome.fill.model_calls]
        if outcome.plan is None:
            record(state, "plan", [*events, ("error", {"template": template, "reason": outcome.reason, "detail": outcome.detail})])
            if template == ESCALATE_TEMPLATE:
                return _fail(state, f"could not plan the escalation: {outcome.detail}")
            return _escalate(outcome.reason or "invalid_plan", outcome.detail, "plan")
        built = outcome.plan
        digest = store.store_plan(built)
        body = built.model_dump(mode="json")
        details = {"slot_sources": outcome.fill.sources, "rejected_slots": outcome.fill.rejected}
        record(state, "plan", [*events, ("plan", {"template": built.template, "plan_hash": digest, "plan": body, **details})])
        return {"plan": body, "plan_hash": digest, "step_index": 0, "outputs": {}}

    def check(state: RunState) -> dict[str, Any]:
        built = current_plan(state)
        verdict = deps.policy.evaluate(
            built,
            state["ticket"],
            flags=_flags(state),
            route_confidence=(state.get("route") or {}).get("confidence"),
            received_at=_received_at(state),
            run_id=state["run_id"],
        )
        decided = [("policy_decision", {"plan_hash": state["plan_hash"], **verdict.model_dump(mode="json")})]
        if verdict.decision == "needs_approval":
            record(state, "check", decided, status="waiting_approval")
            pending = [step.model_dump(mode="json") for step in verdict.blocking]
            store.request_approval(state["run_id"], state["plan_hash"], store.protection.mask(pending))
            return {"verdict": verdict.model_dump(mode="json")}
        record(state, "check", decided)
        if verdict.decision == "deny":
            detail = "; ".join(f"{d.step_id}: {d.reason} [{d.rule_id}]" for d in verdict.blocking)
            if built.template == ESCALATE_TEMPLATE:
                return _fail(state, f"policy denies the escalation plan: {detail}")
            return _escalate("policy_denied", detail, "check")
        return {"verdict": verdict.model_dump(mode="json")}

    def approval(state: RunState) -> dict[str, Any]:
        pending = [d for d in state["verdict"]["steps"] if d["decision"] == "needs_approval"]
        decided = store.decided_approval(state["run_id"], state["plan_hash"])
        if decided is not None:  # answered already: a resumed or re-driven run does not ask again
            answer: Any = {"approved": decided.status == "approved", "by": decided.decided_by, "note": decided.note or ""}
        else:
            answer = interrupt({"run_id": state["run_id"], "plan_hash": state["plan_hash"], "steps": pending})
        approved = bool(answer.get("approved")) if isinstance(answer, dict) else False
        record(state, "approval", [("approval", {"plan_hash": state["plan_hash"], "steps": pending, "answer": answer})], status="running")
        if not approved:
            return _escalate("approval_rejected", str(answer.get("note", "")) if isinstance(answer, dict) else "", "approval")
        shown = {d["step_id"]: [c["rule_id"] for c in d["checks"] if c["decision"] == "needs_approval"] for d in pending}
        return {"verdict": {**state["verdict"], "decision": "allow"}, "approved_rules": shown}

    def execute(state: RunState) -> dict[str, Any]:
        built = current_plan(state)
        step = built.steps[state["step_index"]]
        # on the record before it happens, so a crash mid-call shows in the record
        record(state, "execute", [("tool_call", {"step_id": step.id, "tool": step.tool, "args": step.args})])
        context = GateContext(
            ticket=state["ticket"],
            flags=_flags(state),
            approved_rules=state.get("approved_rules") or {},
            route_confidence=(state.get("route") or {}).get("confidence"),
            received_at=_received_at(state),
            run_id=state["run_id"],
        )
        try:
            result = deps.executor.run_step(built, state["plan_hash"], step, state["outputs"], state["run_id"], context)
        except ExecutionRefused as exc:
            record(state, "execute", [("error", {"step_id": step.id, "error": str(exc)})])
            return _fail(state, str(exc))
        payload = result.model_dump(mode="json", exclude_none=False)  # with the gate's decision, for side effects
        record(state, "execute", [("tool_result", payload)])
        results = [*state.get("results", []), payload]
        if result.ok:
            return {"outputs": {**state["outputs"], step.id: result.output}, "step_index": state["step_index"] + 1, "results": results}
        message = (result.error or {}).get("message", "step failed")
        if built.template == ESCALATE_TEMPLATE and _queued_anyway(deps, step.tool, result.idempotency_key):
            log.warning("escalation queued, platform not told", run_id=state["run_id"], error=message)
            carry_on = {"outputs": {**state["outputs"], step.id: {}}, "step_index": state["step_index"] + 1, "results": results}
            return {**carry_on, "error": f"queued for a person, but the platform was not told: {message}"}
        if built.template == ESCALATE_TEMPLATE or step.on_error == "fail":
            return {**_fail(state, f"step {step.id} failed: {message}"), "results": results}
        kind = (result.error or {}).get("kind")
        reason = "tool_failure"
        if kind == "denied":
            reason = "identity_not_verified" if step.tool == "verify_identity" else "policy_denied"
        elif kind == "invalid_arguments":
            reason = "invalid_plan"
        return {**_escalate(reason, f"step {step.id} ({step.tool}): {message}", "execute"), "results": results}

    def reply(state: RunState) -> dict[str, Any]:
        built = current_plan(state)
        outputs, dropped = deps.policy.screen_passages(built, state["outputs"])
        composed = compose_reply(built, outputs)
        if composed is None:
            record(state, "reply", [("error", {"detail": "no grounded answer", "dropped_passages": dropped})])
            if dropped:  # say so: an agent should look at the articles, not only the question
                detail = f"no answer left: {len(dropped)} passage(s) carried instructions and were not quoted"
                return _escalate("missing_information", detail, "reply")
            return _escalate("missing_information", "the knowledge base has nothing that answers this", "reply")
        violations = deps.policy.check_reply(built, composed.text, outputs, state["ticket"])
        guard = {"phase": "output_guard", "decision": "deny" if violations else "allow", "dropped_passages": dropped}
        guard["violations"] = [v.model_dump() for v in violations]
        if violations:
            record(state, "reply", [("error", {"detail": "reply not sent", "guard": guard})])
            detail = "; ".join(f"{v.detail} [{v.rule_id}]" for v in violations)
            return _escalate("policy_denied", f"reply not sent: {detail}", "reply")
        record(state, "reply", [("reply", composed.model_dump(mode="json") | {"guard": guard})])
        return {"reply": composed.model_dump(mode="json")}

    def done(state: RunState) -> dict[str, Any]:
        check_lease()  # sealing the run is a write like any other
        built = state.get("plan")
        if state.get("status") == "failed":
            status = "failed"
        elif built and built["template"] == ESCALATE_TEMPLATE:
            status = "escalated"
        else:
            status = "completed"
        escalation = state.get("escalation") or {}
        store.finish_run(
            state["run_id"],
            status=status,
            template=(built or {}).get("template"),
            plan_hash=state.get("plan_hash"),
            route=state.get("route"),
            reply=(state.get("reply") or {}).get("text"),
            escalation_reason=(escalation.get("reason") or (state.get("route") or {}).get("reason"))
            if status == "escalated"
            else None,
            error=state.get("error"),
        )
        return {"status": status}

    graph = StateGraph(RunState)
    for name, node in [
        ("intake", intake),
        ("route", route),
        ("plan", plan),
        ("check", check),
        ("approval", approval),
        ("execute", execute),
        ("reply", reply),
        ("done", done),
    ]:
        graph.add_node(name, node)
    graph.add_edge(START, "intake")
    graph.add_conditional_edges("intake", _after_intake, ["route", "plan"])
    graph.add_edge("route", "plan")
    graph.add_conditional_edges("plan", _after_plan, ["check", "plan", "done"])
    graph.add_conditional_edges("check", _after_check, ["approval", "execute", "plan", "done"])
    graph.add_conditional_edges("approval", _after_check, ["execute", "plan", "done"])
    graph.add_conditional_edges("execute", _after_execute, ["execute", "reply", "plan", "done"])
    graph.add_conditional_edges("reply", _after_plan_or_reply, ["plan", "done"])
    graph.add_edge("done", END)
    return graph.compile(checkpointer=checkpointer)


def _queued_anyway(deps: GraphDeps, tool_name: str, key: str | None) -> bool:
    """A failed hand-off whose queue row was written (only its notice failed): the run is
    escalated, as the queue says, not failed."""
    queued = getattr(deps.executor.registry.get(tool_name), "queued", None)
    return key is not None and queued is not None and queued(key)


def _fail(state: RunState, message: str) -> dict[str, Any]:
    log.warning("run failed", run_id=state["run_id"], error=message)
    return {"status": "failed", "error": message}


def _flags(state: RunState) -> list[str]:
    return [flag["rule_id"] for flag in (state.get("guard") or {}).get("flags", [])]


def _received_at(state: RunState) -> datetime | None:
    value = state.get("received_at")
    return datetime.fromisoformat(value) if value else None


def _after_intake(state: RunState) -> str:
    return "plan" if state.get("escalation") else "route"


def _after_plan(state: RunState) -> str:
    if state.get("status") == "failed":
        return "done"
    return "plan" if state.get("plan") is None else "check"


def _after_check(state: RunState) -> str:
    if state.get("status") == "failed":
        return "done"
    if state.get("plan") is None:
        return "plan"
    return "approval" if state["verdict"]["decision"] == "needs_approval" else "execute"


def _after_execute(state: RunState) -> str:
    if state.get("status") == "failed":
        return "done"
    if state.get("plan") is None:
        return "plan"
    return "execute" if state["step_index"] < len(state["plan"]["steps"]) else "reply"


def _after_plan_or_reply(state: RunState) -> str:
    return "plan" if state.get("plan") is None else "done"
