"""Replay a run from its record: the proof that it did what the record says.

Strict replay runs the same graph again, but nothing in it reaches the world: the router
returns the recorded route decision, the slot model returns the recorded model outputs, and
each tool returns its recorded result after checking that the executor resolved exactly the
recorded arguments. Slot patterns, plan compilation, policy, argument resolution, retries and
the reply run for real. The new events go to a throwaway in-memory record and are compared
with the recorded ones, event by event; the first difference is the divergence.

Live replay (`--live`) routes and fills slots with the current models, and plans and checks
with the current catalogue and policies, against the recorded tool results. A tool call the
record does not have stops it: side effects are never executed. Its report lists the
decisions that changed: the drift check after changing a model, prompt, threshold or policy.

Recorded events hold masked PII; replay works on the originals opened from the vault, and
everything it reports is masked again.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pydantic import BaseModel
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel, create_engine

from agent.audit import AuditSource, RunQuery, clip, load_run, run_ids, sealed_entries, summarize, verify_recorded
from agent.executor import Executor
from agent.graph import GraphDeps, build_graph
from agent.integrity import RecordedRun, RecordError, RunInProgress
from agent.models.calls import ModelCall
from agent.models.local import ModelUnavailable
from agent.record import RunStore, SideEffectLedger
from agent.routing import RouteDecision
from agent.runtime import Runtime
from agent.schema import MANAGED_TABLES
from agent.tickets import Ticket
from agent.vault import VaultTampered
from plans.models import Template, canonical_json
from policies.engine import RecordedLimits
from tools.base import Tool, ToolContext, ToolError
from tools.registry import ToolRegistry

Mode = Literal["strict", "live"]
VOLATILE = {"tool_result": ("duration_ms",)}  # measured afresh on every run


class ReplayStop(BaseException):  # noqa: N818 (a BaseException, so no `except Exception` in the graph swallows it)
    """The replayed run asked for something the record cannot serve; replay stops there."""


class FieldDiff(BaseModel):
    path: str
    recorded: Any = None
    replayed: Any = None


class EventCheck(BaseModel):
    """One line of the replay timeline: a recorded event and whether replay produced it again."""

    position: int
    seq: int | None
    kind: str
    node: str
    summary: str
    status: Literal["same", "differs", "missing", "extra"]


class Divergence(BaseModel):
    position: int
    seq: int | None
    kind: str
    message: str
    fields: list[FieldDiff] = []


class DecisionChange(BaseModel):
    decision: str
    recorded: Any = None
    replayed: Any = None


class ReplayReport(BaseModel):
    run_id: str
    mode: Mode
    status: Literal["reproduced", "diverged", "unchanged", "changed", "tampered"]
    message: str
    timeline: list[EventCheck] = []
    divergence: Divergence | None = None
    changes: list[DecisionChange] = []
    stopped: str | None = None
    notes: list[str] = []

    @property
    def ok(self) -> bool:
        return self.status in ("reproduced", "unchanged")


class ReplaySkip(BaseModel):
    run_id: str
    reason: str
    in_progress: bool = False


class ReplaySummary(BaseModel):
    mode: Mode
    replayed: int = 0
    ok: int = 0
    failed: int = 0
    skipped: list[ReplaySkip] = []
    seconds: float = 0.0
    reports: list[ReplayReport] = []


@dataclass
class Tape:
    """One recorded run's inputs from the world, served in recorded order."""

    ticket: dict[str, Any]
    routes: list[dict[str, Any]]
    route_calls: list[list[dict[str, Any]]]
    slot_calls: list[dict[str, Any]]
    results: list[dict[str, Any]]
    answers: list[Any]
    unavailable: list[str]
    live: bool
    limit_checks: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (phase, step, rule) -> check
    used: set[int] = field(default_factory=set)
    open_calls: dict[str, list[Any]] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: list[dict[str, Any]], live: bool) -> Tape:
        routes, route_calls, pending_calls, slot_calls = [], [], [], []
        for event in events:
            if event["kind"] == "model_call" and event["node"] == "route":
                pending_calls.append(event["payload"])
            elif event["kind"] == "model_call":
                slot_calls.append(event["payload"])
            elif event["kind"] == "route":
                routes.append(event["payload"])
                route_calls.append(pending_calls)
                pending_calls = []
        return cls(
            ticket=next(e["payload"]["ticket"] for e in events if e["kind"] == "intake"),
            routes=routes,
            route_calls=route_calls,
            slot_calls=slot_calls,
            results=[e["payload"] for e in events if e["kind"] == "tool_result"],
            answers=[e["payload"].get("answer") for e in events if e["kind"] == "approval"],
            limit_checks=_recorded_checks(events),
            unavailable=[  # the slot model could not be loaded: no call was recorded, the plan escalated
                e["payload"].get("detail", "")
                for e in events
                if e["kind"] == "escalation" and e["payload"].get("reason") == "model_unavailable" and e["payload"].get("stage") == "plan"
            ],
            live=live,
        )

    def route(self, ticket: Ticket) -> RouteDecision:
        if Ticket.model_validate(self.ticket) != ticket:
            raise ReplayStop("the router was asked about a ticket that is not the recorded one")
        if not self.routes:
            raise ReplayStop("the graph asked for a route decision the record does not have")
        calls = [ModelCall.model_validate(call) for call in self.route_calls.pop(0)]
        return RouteDecision.model_validate({**self.routes.pop(0), "model_calls": calls})

    def slot_call(self, names: list[str]) -> ModelCall:
        if not self.slot_calls and self.unavailable:
            raise ModelUnavailable(self.unavailable.pop(0))
        if not self.slot_calls:
            raise ReplayStop(f"the planner asked the slot model for {names}, but the record has no further model call")
        return ModelCall.model_validate(self.slot_calls.pop(0))

    def limit_check(self, phase: str, step_id: str, rule_id: str) -> dict[str, Any] | None:
        return self.limit_checks.get((phase, step_id, rule_id))

    def answer(self, pending: Any) -> Any:
        if not self.answers:
            raise ReplayStop(f"the run now waits for approval ({_steps_of(pending)}), and the record has no answer")
        return self.answers.pop(0)

    def serve(self, spec: Tool, step_id: str, args: BaseModel) -> Any:
        """The recorded outcome of this call, one attempt at a time (earlier attempts fail transiently)."""
        call = self.open_calls.get(step_id)
        if call is None:
            index = self._find(spec, step_id, args)
            call = self.open_calls[step_id] = [index, 0]
        result = self.results[call[0]]
        call[1] += 1
        if call[1] < result.get("attempts", 1):
            raise ToolError("transient", f"replayed failure of attempt {call[1]}")
        del self.open_calls[step_id]
        self.used.add(call[0])
        if result["status"] == "succeeded":
            return spec.output_model.model_validate(result["output"])
        error = result.get("error") or {}
        raise ToolError(error.get("kind", "permanent"), error.get("message", ""), status_code=error.get("status_code"))

    def _find(self, spec: Tool, step_id: str, args: BaseModel) -> int:
        """Strict: the next recorded call of this step, which must have these arguments.
        Live: any unused recorded call of this tool with these arguments."""
        for index, result in enumerate(self.results):
            if index in self.used or result["status"] not in ("succeeded", "failed") or result["tool"] != spec.name:
                continue
            same_args = _validated(spec, result.get("args")) == args
            if self.live and same_args:
                return index
            if not self.live and result["step_id"] == step_id:
                if not same_args:
                    raise ReplayStop(
                        f"step {step_id} ({spec.name}) resolved arguments that differ from the recorded ones: "
                        f"{clip(canonical_json(args.model_dump(mode='json')))} vs {clip(canonical_json(result.get('args')))}"
                    )
                return index
        raise ReplayStop(
            f"step {step_id} would call {spec.name} with arguments the record does not have "
            f"({clip(canonical_json(args.model_dump(mode='json')))}); replay never executes tools"
        )


def _validated(spec: Tool, args: Any) -> BaseModel | None:
    try:
        return spec.input_model.model_validate(args)
    except ValueError:
        return None


def _steps_of(pending: Any) -> str:
    steps = pending.get("steps", []) if isinstance(pending, dict) else []
    return ", ".join(f"{s.get('step_id')} ({s.get('tool')})" for s in steps) or "unknown steps"


class RecordedRouter:
    def __init__(self, replayer: Replayer) -> None:
        self.replayer = replayer

    def route(self, ticket: Ticket) -> RouteDecision:
        return self.replayer.tape.route(ticket)


class RecordedSlotModel:
    def __init__(self, replayer: Replayer) -> None:
        self.replayer = replayer

    def propose(self, template: Template, names: list[str], ticket: Ticket, feedback: str | None) -> ModelCall:
        return self.replayer.tape.slot_call(names)


class RecordedTool(Tool):
    """Stands in for a real tool: same name, schemas and side-effect flag; the record answers."""

    def __init__(self, spec: Tool, replayer: Replayer) -> None:
        self.spec, self.replayer = spec, replayer
        self.name, self.description = spec.name, spec.description
        self.input_model, self.output_model, self.side_effects = spec.input_model, spec.output_model, spec.side_effects

    def invoke(self, args: BaseModel, ctx: ToolContext) -> BaseModel:
        return self.replayer.tape.serve(self.spec, ctx.step_id, args)


def recorded_events(run: RecordedRun, open_sealed: Callable[[str, Any], Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The run's events as they really were (vault opened), normalised for comparison: only the
    last attempt of a re-driven run, without tool calls that a crash interrupted."""
    events = [
        {"seq": e.seq, "kind": e.kind, "node": e.node, "payload": open_sealed(f"event:{run.id}:{e.seq}", e.payload)} for e in run.events
    ]
    notes = []
    intakes = [i for i, e in enumerate(events) if e["kind"] == "intake"]
    if len(intakes) > 1:
        notes.append(f"the run was re-driven from its ticket at event {events[intakes[-1]]['seq']}; replaying that attempt")
        events = events[intakes[-1] :]
    kept = []
    for index, event in enumerate(events):
        following = events[index + 1] if index + 1 < len(events) else None
        step = event["payload"].get("step_id")
        if event["kind"] == "tool_call" and not (
            following and following["kind"] in ("tool_result", "error") and following["payload"].get("step_id") == step
        ):
            notes.append(f"event {event['seq']}: the call of step {step} was interrupted (crash) and resumed; left out")
            continue
        kept.append(event)
    return kept, notes


def _comparable(event: dict[str, Any]) -> dict[str, Any]:
    payload = {k: v for k, v in event["payload"].items() if k not in VOLATILE.get(event["kind"], ())}
    return {"kind": event["kind"], "node": event["node"], "payload": payload}


def field_diffs(recorded: Any, replayed: Any, path: str = "") -> list[FieldDiff]:
    if isinstance(recorded, dict) and isinstance(replayed, dict):
        diffs = []
        for key in sorted(set(recorded) | set(replayed), key=str):
            diffs += field_diffs(recorded.get(key), replayed.get(key), f"{path}.{key}" if path else str(key))
        return diffs
    if isinstance(recorded, list) and isinstance(replayed, list) and len(recorded) == len(replayed):
        return [d for i, (a, b) in enumerate(zip(recorded, replayed, strict=True)) for d in field_diffs(a, b, f"{path}[{i}]")]
    return [] if recorded == replayed else [FieldDiff(path=path or "(whole)", recorded=recorded, replayed=replayed)]


def decisions(events: list[dict[str, Any]], outcome: dict[str, Any]) -> dict[str, Any]:
    """What a drift check compares: the decisions, not incidental details such as latencies."""

    def of(kind: str) -> list[dict[str, Any]]:
        return [e["payload"] for e in events if e["kind"] == kind]

    return {
        "route": [{"template": p.get("template"), "reason": p.get("reason")} for p in of("route")],
        "plan": [{"template": p.get("template"), "plan_hash": p.get("plan_hash")} for p in of("plan")],
        "policy": [
            {"decision": p.get("decision"), "steps": [(s.get("step_id"), s.get("decision"), s.get("rule_id")) for s in p.get("steps", [])]}
            for p in of("policy_decision")
        ],
        "steps": [(p.get("step_id"), p.get("tool"), p.get("args"), p.get("status")) for p in of("tool_result")],
        "escalation": [{"reason": p.get("reason"), "stage": p.get("stage")} for p in of("escalation")],
        "reply": [p.get("text") for p in of("reply")],
        "outcome": {"status": outcome.get("status"), "template": outcome.get("template")},
    }


@dataclass
class Scratch:
    """A throwaway world to replay in: an in-memory record and ledger, and the graph over them."""

    store: RunStore
    ledger: SideEffectLedger
    checkpoints: InMemorySaver
    graph: Any

    @classmethod
    def build(cls, runtime: Runtime, router: Any, planner: Any, registry: ToolRegistry, recorded_limits: RecordedLimits) -> Scratch:
        engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
        store = RunStore(engine)
        store.versions = runtime.store.versions  # as taken when the runtime was built, like a recording run's
        ledger = SideEffectLedger(engine)
        policy = runtime.policy.for_replay(recorded_limits)  # rate-limit counts as recorded; nothing counted
        executor = Executor(registry, ledger, runtime.settings.executor, gate=policy, sleep=lambda _: None)  # recorded retries need no waiting
        checkpoints = InMemorySaver()
        graph = build_graph(GraphDeps(store, router, planner, policy, executor), checkpoints)
        return cls(store, ledger, checkpoints, graph)

    def clear(self) -> None:
        with self.store.engine.begin() as conn:
            for table in reversed(SQLModel.metadata.sorted_tables):
                if table.name in MANAGED_TABLES:
                    conn.execute(table.delete())


def _recorded_checks(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every policy check the run recorded, at plan time and at the gate, by where it was made."""
    decisions = [step for e in events if e["kind"] == "policy_decision" for step in e["payload"].get("steps") or []]
    decisions += [e["payload"]["policy"] for e in events if e["kind"] == "tool_result" and isinstance(e["payload"].get("policy"), dict)]
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for decision in decisions:
        for check in decision.get("checks") or []:
            found.setdefault((decision.get("phase", "plan"), decision.get("step_id", ""), check.get("rule_id", "")), check)
    return found


def _model_outputs(events: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    return [(e["payload"].get("purpose"), e["payload"].get("output")) for e in events if e["kind"] == "model_call"]


class Replayer:
    """Replays recorded runs through this runtime's graph, catalogue and policies."""

    def __init__(self, runtime: Runtime, source: AuditSource, live: bool = False) -> None:
        self.runtime, self.source, self.live = runtime, source, live
        self.mode: Mode = "live" if live else "strict"
        self.tape: Tape | None = None
        self._same_policy = False
        self.registry = ToolRegistry(RecordedTool(spec, self) for spec in runtime.registry)
        if live:
            router, planner = runtime.router, runtime.planner
        else:
            router, planner = RecordedRouter(self), copy.copy(runtime.planner)
            planner.filler = copy.copy(runtime.planner.filler)
            planner.filler.model = RecordedSlotModel(self)
        self.scratch = Scratch.build(runtime, router, planner, self.registry, self._recorded_limit)

    def _recorded_limit(self, phase: str, step_id: str, rule_id: str) -> dict[str, Any] | None:
        """The run's own rate-limit check, while the policy is the one it was recorded under (a
        changed policy is judged afresh, as the counters stood when the run arrived)."""
        if self.tape is None or not self._same_policy:
            return None
        return self.tape.limit_check(phase, step_id, rule_id)

    def replay(self, run_id: str) -> ReplayReport:
        """Verify the record, then replay it. Raises RecordError when the run cannot be replayed."""
        run = load_run(self.source, run_id)
        integrity = verify_recorded(self.source, run)
        if integrity.status != "verified":
            return self._tampered(run_id, integrity.message)
        if run.record_version < 2:
            raise RecordError(
                f"run {run_id} was recorded in record format {run.record_version} (before masked payloads and "
                "escalation events), which replay cannot reproduce; `caseplan audit verify` still checks it"
            )
        try:
            return self._replay_verified(run)
        except VaultTampered as exc:
            return self._tampered(run_id, str(exc))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # ValueError covers pydantic's
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise RecordError(
                f"run {run_id} cannot be replayed: its recorded ticket or events are not what caseplan writes "
                f"({type(exc).__name__}: {reason}). Its originals were erased, or it was changed and re-hashed after "
                "it was written; `caseplan audit verify` still checks its chain"
            ) from None

    def _replay_verified(self, run: RecordedRun) -> ReplayReport:
        run_id = run.id
        recorded, notes = recorded_events(run, self._opener(run))
        recorded_versions, current = run.versions or {}, self.scratch.store.versions or {}
        changed = sorted(k for k in set(recorded_versions) | set(current) if recorded_versions.get(k) != current.get(k))
        if changed:
            notes.append("recorded under other versions: " + ", ".join(f"{k} {recorded_versions.get(k)} (now {current.get(k)})" for k in changed))
        self._same_policy = recorded_versions.get("policy") == current.get("policy")
        self.tape = Tape.from_events(recorded, self.live)
        replayed, outcome, stopped = self._run_again(run, recorded)
        recorded_outcome = {"status": run.status, "template": run.template}
        if self.live:
            return self._drift_report(run_id, recorded, replayed, recorded_outcome, outcome, stopped, notes)
        return self._strict_report(run_id, recorded, replayed, stopped, notes)

    def _opener(self, run: RecordedRun) -> Callable[[str, Any], Any]:
        entries = sealed_entries(self.source, run.id)

        def open_sealed(ref: str, masked: Any) -> Any:
            return self.source.protection.reveal(entries.get(ref), masked)

        return open_sealed

    def _run_again(self, run: RecordedRun, recorded: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any], str | None]:
        """Run the graph again on the scratch record, serving what the tape holds."""
        scratch = self.scratch
        scratch.clear()
        for result in (e["payload"] for e in recorded if e["kind"] == "tool_result"):
            if result["status"] == "deduplicated":  # the side effect had happened before: the ledger knew it
                scratch.ledger.begin(result["idempotency_key"], run.id, result["step_id"], result["tool"])
                scratch.ledger.finish(result["idempotency_key"], output=result["output"])
        ticket = self.tape.ticket
        scratch.store.create_run(ticket, scratch.store.versions or {}, run_id=run.id)
        thread = f"replay-{uuid.uuid4().hex}"
        config = {"configurable": {"thread_id": thread}}
        stopped = None
        try:
            received = run.created_at.isoformat()
            state = scratch.graph.invoke({"run_id": run.id, "ticket": ticket, "received_at": received}, config, durability="exit")
            while state.get("__interrupt__"):
                answer = self.tape.answer(state["__interrupt__"][0].value)
                state = scratch.graph.invoke(Command(resume=answer), config, durability="exit")
        except ReplayStop as exc:
            stopped = str(exc)
        finally:
            scratch.checkpoints.delete_thread(thread)  # `--all` over many runs stays in bounded memory
        events = [{"seq": e.seq, "kind": e.kind, "node": e.node, "payload": e.payload} for e in scratch.store.events(run.id)]
        row = scratch.store.get_run(run.id)
        outcome = {"status": "stopped" if stopped else row.status, "template": row.template}
        return events, outcome, stopped

    def _timeline(self, recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> tuple[list[EventCheck], int | None]:
        checks, first = [], None
        for position in range(max(len(recorded), len(replayed))):
            mine = recorded[position] if position < len(recorded) else None
            again = replayed[position] if position < len(replayed) else None
            shown = mine or again
            if mine is None:
                status = "extra"
            elif again is None:
                status = "missing"
            else:
                status = "same" if _comparable(mine) == _comparable(again) else "differs"
            if status != "same" and first is None:
                first = position
            checks.append(
                EventCheck(
                    position=position + 1,
                    seq=mine["seq"] if mine else None,
                    kind=shown["kind"],
                    node=shown["node"],
                    summary=summarize(shown["kind"], self.source.protection.mask(shown["payload"])),
                    status=status,
                )
            )
        return checks, first

    def _strict_report(
        self, run_id: str, recorded: list[dict[str, Any]], replayed: list[dict[str, Any]], stopped: str | None, notes: list[str]
    ) -> ReplayReport:
        timeline, first = self._timeline(recorded, replayed)
        mask = self.source.protection.mask
        if first is None and stopped is None:
            message = f"run {run_id}: {len(recorded)} events reproduced exactly from the record"
            return ReplayReport(run_id=run_id, mode="strict", status="reproduced", message=message, timeline=timeline, notes=notes)
        divergence = None
        if first is not None:
            mine = recorded[first] if first < len(recorded) else None
            again = replayed[first] if first < len(replayed) else None
            shown = mine or again
            if mine is None:
                text = f"replay produced an extra {again['kind']} event"
            elif again is None:
                text = f"replay stopped before recorded event {mine['seq']} ({mine['kind']})"
            else:
                text = f"recorded event {mine['seq']} ({mine['kind']}) differs from the replayed {again['kind']} event"
            fields = field_diffs(_comparable(mine), _comparable(again)) if mine and again else []
            divergence = Divergence(
                position=first + 1,
                seq=mine["seq"] if mine else None,
                kind=shown["kind"],
                message=f"run {run_id}: {text}",
                fields=[FieldDiff(path=f.path, recorded=mask(f.recorded), replayed=mask(f.replayed)) for f in fields],
            )
        message = divergence.message if divergence else f"run {run_id}: {stopped}"
        return ReplayReport(
            run_id=run_id,
            mode="strict",
            status="diverged",
            message=mask(message),
            timeline=timeline,
            divergence=divergence,
            stopped=mask(stopped) if stopped else None,
            notes=notes,
        )

    def _drift_report(
        self,
        run_id: str,
        recorded: list[dict[str, Any]],
        replayed: list[dict[str, Any]],
        recorded_outcome: dict[str, Any],
        outcome: dict[str, Any],
        stopped: str | None,
        notes: list[str],
    ) -> ReplayReport:
        timeline, _ = self._timeline(recorded, replayed)
        mask = self.source.protection.mask
        before, after = decisions(recorded, recorded_outcome), decisions(replayed, outcome)
        changes = [DecisionChange(decision=k, recorded=mask(before[k]), replayed=mask(after[k])) for k in before if before[k] != after[k]]
        said, says = _model_outputs(recorded), _model_outputs(replayed)
        if said != says:
            differing = sum(a != b for a, b in zip(said, says, strict=False)) + abs(len(said) - len(says))
            notes = [*notes, f"the models answered differently ({differing} of {max(len(said), len(says))} calls)"]
        if not changes and stopped is None:
            message = f"run {run_id}: every decision is unchanged with the current models, catalogue and policies"
            return ReplayReport(run_id=run_id, mode="live", status="unchanged", message=message, timeline=timeline, notes=notes)
        message = f"run {run_id}: decisions changed: {', '.join(c.decision for c in changes)}"
        return ReplayReport(
            run_id=run_id,
            mode="live",
            status="changed",
            message=message,
            timeline=timeline,
            changes=changes,
            stopped=mask(stopped) if stopped else None,
            notes=notes,
        )

    def _tampered(self, run_id: str, problem: str) -> ReplayReport:
        message = f"the record fails verification, so it is not replayed: {problem}"
        return ReplayReport(run_id=run_id, mode=self.mode, status="tampered", message=message)

    def replay_many(self, query: RunQuery) -> ReplaySummary:
        started = time.perf_counter()
        summary = ReplaySummary(mode=self.mode)
        for run_id in run_ids(self.source, query):
            try:
                report = self.replay(run_id)
            except RecordError as exc:
                summary.skipped.append(ReplaySkip(run_id=run_id, reason=str(exc), in_progress=isinstance(exc, RunInProgress)))
                continue
            summary.replayed += 1
            summary.ok += report.ok
            summary.failed += not report.ok
            summary.reports.append(report)
        summary.seconds = round(time.perf_counter() - started, 3)
        return summary

