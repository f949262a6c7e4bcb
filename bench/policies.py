"""What policies and guards cost per ticket.

End to end: the same tickets run, interleaved, through two runtimes that differ only in policy:
the full one (input guard, plan check, the gate before every side effect, passage screening and
the output guard) and a baseline that allows everything and guards nothing. Model inference is
excluded as in `bench.orchestration`: routing decisions are computed once with the real router
and served; slots come from patterns and ticket fields. Tickets: the orchestration benchmark's
six, customer utterances from Bitext dev (`../shared/evaldata/bitext/dev.csv`), and hostile
tickets from the adversarial suite.

Parts: the input guard alone per ticket (ordinary and 20,000-character tickets) and the plan
check alone per plan.

    python -m bench.policies [--bitext 60] [--rounds 3] [--evaldata ../shared/evaldata] [--out bench/results/policies.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.example_bank import evaldata_dir
from agent.runner import Runner
from agent.runtime import Runtime
from agent.settings import load_settings
from agent.tickets import Ticket
from bench.orchestration import TICKETS, ReplayRouter, percentile, replay_embedder
from bench.results import write_result
from policies.engine import StepDecision, Verdict
from policies.guard import GuardReport
from tools.sandbox.seed import seed_demo

EVALDATA = evaldata_dir()  # $CASEPLAN_EVALDATA_DIR, else ../shared/evaldata, as the router reads it
HOSTILE = Path(__file__).resolve().parents[1] / "tests" / "adversarial" / "hostile_tickets.jsonl"
# Rate limits would turn repeated resets into escalations in one runtime and not the other.
NO_LIMITS = "version: 1\nrate_limits:\n" + "".join(
    f"  - {{id: {rule}, tool: password_reset, per: {per}, limit: 1000000, window: 1d}}\n"
    for rule, per in (("resets-per-requester-per-day", "requester"), ("resets-per-account-per-day", "account"))
)


def load_tickets(evaldata: Path, bitext: int) -> dict[str, list[Ticket]]:
    """Ordinary tickets (the orchestration six and a Bitext sample) and a sample of hostile ones."""
    tickets = list(TICKETS)
    source = evaldata / "bitext" / "dev.csv"
    if not source.is_file():
        raise SystemExit(f"{source} not found: pass --evaldata (or set CASEPLAN_EVALDATA_DIR) to the shared evaldata folder")
    with source.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    step = max(1, len(rows) // max(1, bitext))
    tickets += [Ticket(text=row["utterance"], requester_email="omar@example.com", ticket_id="1001") for row in rows[::step][:bitext]]
    cases = [json.loads(line) for line in HOSTILE.read_text(encoding="utf-8").splitlines()]
    hostile = [Ticket(**case["ticket"]) for case in cases[::8] if not case.get("pad") and "\x00" not in case["ticket"]["text"]]
    return {"ordinary": tickets, "hostile": hostile}


def build(folder: Path, warm: Runtime, decisions: dict[str, Any], policy_file: Path) -> Runtime:
    settings = load_settings(env={"CASEPLAN_DATA_DIR": str(folder), "CASEPLAN__POLICIES__FILES": f"[{policy_file}]"})
    runtime = Runtime.build(settings, embedder=replay_embedder(warm.embedder, folder), local_model=warm.local_model, router=ReplayRouter(decisions))
    runtime.planner.filler.model = None
    seed_demo(runtime.sandbox)
    return runtime


def without_policy(runtime: Runtime) -> Runtime:
    """The baseline: every step allowed, no guard, no gate."""
    policy = runtime.policy
    policy.guardian.inspect_ticket = lambda ticket: GuardReport()
    policy.evaluate = lambda plan, *args, **kwargs: Verdict(
        decision="allow",
        steps=[StepDecision(step_id=s.id, tool=s.tool, decision="allow", rule_id="none", reason="baseline") for s in plan.steps],
    )
    policy.screen_passages = lambda plan, outputs: (dict(outputs), [])
    policy.check_reply = lambda *args, **kwargs: []
    runtime.executor.gate = None
    return runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bitext", type=int, default=60)
    parser.add_argument("--evaldata", type=Path, default=EVALDATA)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/policies.json"))
    args = parser.parse_args()
    groups = load_tickets(args.evaldata, args.bitext)
    tickets = [t for group in groups.values() for t in group]

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        policy_file = root / "no-limits.yaml"
        policy_file.write_text(NO_LIMITS)
        warm = Runtime.build(load_settings(env={"CASEPLAN_DATA_DIR": str(root / "router"), "CASEPLAN__ROUTER__USE_MODEL_TIEBREAK": "false"}))
        decisions = {t.text: warm.router.route(t) for t in tickets}
        full = build(root / "full", warm, decisions, policy_file)
        base = without_policy(build(root / "base", warm, decisions, policy_file))
        runners = {"with_policy": Runner(full), "without_policy": Runner(base)}
        for runner in runners.values():  # warm-up: caches, first-time tables
            for ticket in tickets[:10]:
                runner.submit(ticket)
        timings: dict[str, dict[str, list[float]]] = {group: {name: [] for name in runners} for group in groups}
        statuses: dict[str, dict[str, dict[str, int]]] = {group: {name: {} for name in runners} for group in groups}
        for _ in range(args.rounds):
            for group, members in groups.items():
                for ticket in members:
                    for name, runner in runners.items():  # interleaved, so drift hits both alike
                        started = time.perf_counter()
                        result = runner.submit(ticket)
                        timings[group][name].append((time.perf_counter() - started) * 1000)
                        counts = statuses[group][name]
                        counts[result.status] = counts.get(result.status, 0) + 1

        guard_ms = _per_call_ms(lambda t: full.policy.guardian.inspect_ticket(t.model_dump()), tickets)
        long_ticket = Ticket(text=("I forgot my password and my order 1002 is late. " * 420)[:20000], requester_email="jane@example.com")
        guard_long_ms = _per_call_ms(lambda t: full.policy.guardian.inspect_ticket(t.model_dump()), [long_ticket] * 20)
        plans = [full.planner.plan("password_reset", TICKETS[0]).plan, full.planner.plan("close_ticket", TICKETS[3]).plan]
        check_ms = _per_call_ms(lambda p: full.policy.evaluate(p, TICKETS[0].model_dump()), plans * 50)
        for runtime in (warm, full, base):
            runtime.engine.dispose()

    def summary(group: str) -> dict[str, Any]:
        values = timings[group]
        with_p50, without_p50 = statistics.median(values["with_policy"]), statistics.median(values["without_policy"])
        return {
            "distinct_tickets": len(groups[group]),
            "per_ticket_ms": {
                name: {"p50": round(statistics.median(v), 2), "p95": round(percentile(v, 0.95), 2), "mean": round(statistics.fmean(v), 2)}
                for name, v in values.items()
            },
            "overhead_p50_ms": round(with_p50 - without_p50, 2),
            "ratio_p50_with_vs_without": round(with_p50 / without_p50, 3),
            "outcomes": statuses[group],
        }

    result = {
        "benchmark": "policy and guard overhead per ticket (model inference excluded, routing decisions served)",
        "rounds": args.rounds,
        "ordinary": summary("ordinary") | {"sources": "bench.orchestration's six tickets and a Bitext dev sample"},
        "hostile": summary("hostile") | {"sources": "every 8th adversarial-suite ticket"},
        "parts_ms": {
            "input_guard_per_ticket_p50": round(statistics.median(guard_ms), 4),
            "input_guard_20000_chars_p50": round(statistics.median(guard_long_ms), 3),
            "plan_check_per_plan_p50": round(statistics.median(check_ms), 4),
        },
        "note": "without_policy allows every step: on hostile tickets it also does the work the policy stops, so compare overhead on ordinary tickets",
    }
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


def _per_call_ms(call: Any, items: list[Any]) -> list[float]:
    timings = []
    for item in items:
        started = time.perf_counter()
        call(item)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


if __name__ == "__main__":
    main()
