"""Orchestration overhead per ticket: everything except model inference.

Routing decisions, model slot answers and query embeddings are computed once with the real
models, then replayed, so the timed loop measures the graph, planner, policy, executor, tools,
record and checkpoints. Baselines in the same run: the same plans' tool calls made directly
(no graph, record, checkpoint, policy or validation), and the engine floor: a LangGraph
StateGraph of the same state schema and the same number of supersteps per ticket, with the same
SQLite checkpointer and durability, whose nodes do nothing. Floor and caseplan runs alternate
ticket by ticket, so their ratio holds on a machine whose speed drifts during the run.

    python -m bench.orchestration [--tickets 300] [--out bench/results/orchestration.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from agent.graph import RunState
from agent.models.calls import ModelCall
from agent.retrieval_eval import CachedEmbedder
from agent.routing import RouteDecision
from agent.runner import Runner
from agent.runtime import Runtime, open_checkpoint_db
from agent.settings import load_settings
from agent.tickets import Ticket
from bench.results import write_result
from tools.base import ToolContext
from tools.embeddings import Embedder
from tools.sandbox.seed import seed_demo

TICKETS = [
    Ticket(text="I forgot my password and can't log in, my email is jane@example.com", requester_email="jane@example.com", ticket_id="1003"),
    Ticket(text="Any update on ticket #1002?", requester_email="li.wei@example.com"),
    Ticket(text="How long does standard shipping take?", requester_email="omar@example.com"),
    Ticket(text="Please close ticket 1001, the parcel arrived today", requester_email="omar@example.com"),
    Ticket(text="I want to speak to a manager", requester_email="omar@example.com"),
    Ticket(text="What is the capital of France?", requester_email="li.wei@example.com"),
]


SUPERSTEPS = 7  # intake, route, plan, check, execute, reply, done: a one-step plan, the mix's median


class ReplayRouter:
    def __init__(self, decisions: dict[str, RouteDecision]) -> None:
        self.decisions = decisions

    def route(self, ticket: Ticket) -> RouteDecision:
        return self.decisions[ticket.text]


class ReplaySlotModel:
    def __init__(self, answers: dict[str, ModelCall]) -> None:
        self.answers = answers

    def propose(self, template, names, ticket, feedback) -> ModelCall:  # noqa: ANN001
        return self.answers[ticket.text]


def replay_embedder(inner: Embedder, folder: Path) -> CachedEmbedder:
    """Each text embedded once, then served from memory (query embedding is inference); the
    file under `folder` is new and never written, so nothing stale is read."""
    return CachedEmbedder(inner, folder / "replayed-embeddings.npz")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def settings_for(folder: Path, durability: str = "sync"):  # noqa: ANN201
    return load_settings(env={"CASEPLAN_DATA_DIR": str(folder), "CASEPLAN__CHECKPOINTS__DURABILITY": durability})


def time_caseplan(warm: Runtime, folder: Path, durability: str, decisions, slot_answers, count: int):  # noqa: ANN001, ANN201
    """Per ticket: caseplan's time and, interleaved with it, one engine-floor run, so a machine
    that slows down mid-run slows both sides alike and their ratio stays comparable."""
    runtime = Runtime.build(
        settings_for(folder, durability), embedder=replay_embedder(warm.embedder, folder), local_model=warm.local_model, router=ReplayRouter(decisions)
    )
    runtime.planner.filler.model = ReplaySlotModel(slot_answers)
    seed_demo(runtime.sandbox)
    runner = Runner(runtime)
    floor = engine_floor(folder, durability, SUPERSTEPS)
    for ticket in TICKETS:  # warm caches and first-time table creation
        runner.submit(ticket)
        floor()
    timings, floor_timings, steps = [], [], []
    for index in range(count):
        floor_timings.append(floor())
        ticket = TICKETS[index % len(TICKETS)]
        started = time.perf_counter()
        result = runner.submit(ticket)
        timings.append((time.perf_counter() - started) * 1000)
        steps.append(result.steps)
    return runtime, timings, floor_timings, steps


def time_direct_calls(runtime: Runtime, plans: list[list[dict]]) -> list[float]:
    """Baseline: the same successful tool calls, made directly with already-resolved arguments."""
    timings = []
    for index, steps in enumerate(plans):
        started = time.perf_counter()
        for step in steps:
            if step["status"] in ("succeeded", "deduplicated"):
                tool = runtime.registry.get(step["tool"])
                context = ToolContext(f"base{index}", step["step_id"], f"base{index}-{step['step_id']}")
                tool.invoke(tool.input_model.model_validate(step["args"]), context)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def engine_floor(folder: Path, durability: str, supersteps: int) -> Callable[[], float]:
    """The graph engine alone: `supersteps` nodes that do nothing, chained by conditional edges
    like caseplan's, over the same state schema, checkpointer and durability. Returns a function
    that runs one ticket through it and gives its time in ms."""
    graph = StateGraph(RunState)
    names = [f"node{i}" for i in range(supersteps)]
    for index, name in enumerate(names):
        graph.add_node(name, lambda state, i=index: {"step_index": i, "status": "running"})
    graph.add_edge(START, names[0])
    for current, following in itertools.pairwise(names):
        graph.add_conditional_edges(current, lambda state, nxt=following: nxt, [following])
    graph.add_edge(names[-1], END)
    compiled = graph.compile(checkpointer=SqliteSaver(open_checkpoint_db(folder / "floor.db")))
    ticket = TICKETS[0].model_dump(mode="json")

    def run_once() -> float:
        config: Any = {"configurable": {"thread_id": uuid.uuid4().hex}}
        started = time.perf_counter()
        compiled.invoke({"run_id": "r", "ticket": ticket}, config, durability=durability)
        return (time.perf_counter() - started) * 1000

    return run_once


def served_decisions(warm: Runtime) -> tuple[dict[str, RouteDecision], dict[str, ModelCall]]:
    """Each ticket's routing decision and slot-model answer, computed once with the real models."""
    decisions = {t.text: warm.router.route(t) for t in TICKETS}
    slot_answers = {}
    for ticket in TICKETS:
        template = warm.catalogue.get(decisions[ticket.text].template or "escalate")
        fill = warm.planner.filler.fill(template, ticket, {"reason": "out_of_scope", "summary": "s"})
        if fill.model_calls:
            slot_answers[ticket.text] = fill.model_calls[-1]
    return decisions, slot_answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench/results/orchestration.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        warm = Runtime.build(settings_for(Path(tmp) / "warm"))
        seed_demo(warm.sandbox)
        decisions, slot_answers = served_decisions(warm)
        modes, floors = {}, {}
        for durability in ("sync", "exit"):
            runtime, timings, floor, plans = time_caseplan(warm, Path(tmp) / durability, durability, decisions, slot_answers, args.tickets)
            modes[durability] = {"p50_ms": round(statistics.median(timings), 2), "p95_ms": round(percentile(timings, 0.95), 2)}
            floors[durability] = round(statistics.median(floor), 2)
        direct = time_direct_calls(runtime, plans)

    base = statistics.median(direct)
    result = {
        "benchmark": "orchestration per ticket, model inference excluded (decisions and embeddings replayed)",
        "command": "python -m bench.orchestration",
        "tickets": args.tickets,
        "mix": [t.text for t in TICKETS],
        "caseplan": modes,
        "baseline_direct_tool_calls_p50_ms": round(base, 3),
        "baseline_engine_floor_p50_ms": floors,
        "engine_floor_supersteps": SUPERSTEPS,
        "ratio_p50_vs_direct": {mode: round(v["p50_ms"] / base, 1) for mode, v in modes.items()},
        "ratio_p50_vs_engine_floor": {mode: round(v["p50_ms"] / floors[mode], 2) for mode, v in modes.items()},
        "overhead_net_of_tool_work_p50_ms": {mode: round(v["p50_ms"] - base, 2) for mode, v in modes.items()},
        "caseplan_own_code_p50_ms": {mode: round(v["p50_ms"] - base - floors[mode], 2) for mode, v in modes.items()},
        "target_p50_ms": 5.0,
    }
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
