"""What the audit record costs: per run while recording, and `audit verify --all` throughput.

Recording: the same tickets run side by side, interleaved, through runtimes that differ only in
their record: the full record (events masked, originals sealed in the PII vault, sha256 chain,
root hash), the same with an HMAC-SHA256 signing key, the record without PII masking, and a
baseline that keeps the run row and nothing else (no events, plans, masking, sealing or hashing). Model inference is
excluded as in `bench.orchestration`: routing decisions and slot answers are computed once
with the real models, then served.

Verification: `verify_runs` (what `caseplan audit verify --all` runs) over every recorded run,
next to a baseline that only reads the same rows back.

    python -m bench.record [--tickets 300] [--out bench/results/record.json]

SQLite files under a temporary folder, as the embedded default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.audit import AuditSource, RunQuery, iter_runs, run_ids, verify_runs
from agent.record import RecordProtection
from agent.runner import Runner
from agent.runtime import Runtime
from agent.settings import load_settings
from bench.orchestration import (
    TICKETS,
    ReplayRouter,
    ReplaySlotModel,
    percentile,
    replay_embedder,
    served_decisions,
    settings_for,
)
from bench.results import write_result
from tools.sandbox.seed import seed_demo

SIGNING_ENV = "CASEPLAN_RECORD_SIGNING_KEY"
RECORDED = ("full_record", "full_record_hmac", "record_without_pii_masking")


def without_record(runtime: Runtime) -> Runtime:
    """The baseline: the run row and nothing else."""
    store = runtime.store
    store.protection = RecordProtection()
    store.append_events = lambda run_id, events, **run_fields: store.update_run(run_id, **run_fields) if run_fields else None
    store.store_plan = lambda plan: plan.hash
    store.finish_run = lambda run_id, **outcome: store.update_run(run_id, **outcome)
    return runtime


@contextmanager
def signing_key(enabled: bool) -> Iterator[None]:
    """The signing key is read from the environment when a runtime or audit source is opened."""
    if enabled:
        os.environ[SIGNING_ENV] = "bench signing key"
    try:
        yield
    finally:
        os.environ.pop(SIGNING_ENV, None)


def build(folder: Path, warm: Runtime, decisions: dict, answers: dict, signed: bool = False, masked: bool = True) -> Runtime:
    """A runtime on its own SQLite files, checkpointing only at the end (less noise per run)."""
    env = {"CASEPLAN_DATA_DIR": str(folder), "CASEPLAN__CHECKPOINTS__DURABILITY": "exit", "CASEPLAN__RECORD__MASK_PII": str(masked)}
    with signing_key(signed):
        runtime = Runtime.build(load_settings(env=env), embedder=replay_embedder(warm.embedder, folder), local_model=warm.local_model, router=ReplayRouter(decisions))
    runtime.planner.filler.model = ReplaySlotModel(answers)
    seed_demo(runtime.sandbox)
    return runtime


def time_recording(runtimes: dict[str, Runtime], count: int) -> dict[str, list[float]]:
    runners = {name: Runner(runtime) for name, runtime in runtimes.items()}
    for runner in runners.values():  # warm caches, first-time statements
        for ticket in TICKETS:
            runner.submit(ticket)
    timings: dict[str, list[float]] = {name: [] for name in runners}
    for index in range(count):
        ticket = TICKETS[index % len(TICKETS)]
        for name, runner in runners.items():  # interleaved: machine noise hits every mode alike
            started = time.perf_counter()
            runner.submit(ticket)
            timings[name].append((time.perf_counter() - started) * 1000)
    return timings


def time_verification(source: AuditSource, rounds: int = 3) -> dict[str, Any]:
    ids = run_ids(source, RunQuery())
    reads, checks, summary = [], [], None
    for _ in range(rounds):
        started = time.perf_counter()
        events = sum(len(run.events) for run in iter_runs(source, ids))
        reads.append(time.perf_counter() - started)
        summary = verify_runs(source, RunQuery())
        checks.append(summary.seconds)
    if summary is None or summary.verified != len(ids):
        raise SystemExit(f"verification failed: {summary.reports[0].message if summary and summary.reports else 'no runs'}")
    read, check = statistics.median(reads), statistics.median(checks)
    return {
        "runs": len(ids),
        "events": events,
        "verify_runs_per_second": round(len(ids) / check, 1),
        "verify_events_per_second": round(events / check),
        "baseline_read_only_runs_per_second": round(len(ids) / read, 1),
        "ratio_verify_vs_read_only": round(check / read, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("bench/results/record.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warm = Runtime.build(settings_for(root / "warm"))
        seed_demo(warm.sandbox)
        decisions, answers = served_decisions(warm)
        runtimes = {
            "full_record": build(root / "full", warm, decisions, answers),
            "full_record_hmac": build(root / "hmac", warm, decisions, answers, signed=True),
            "record_without_pii_masking": build(root / "unmasked", warm, decisions, answers, masked=False),
            "baseline_run_row_only": without_record(build(root / "baseline", warm, decisions, answers)),
        }
        timings = time_recording(runtimes, args.tickets)
        full = AuditSource.open(runtimes["full_record"].settings)
        events_per_run = statistics.mean(len(run.events) for run in iter_runs(full, run_ids(full, RunQuery())))
        verification = {}
        for name in ("full_record", "full_record_hmac"):
            with signing_key(name.endswith("hmac")):
                source = AuditSource.open(runtimes[name].settings)
            verification[name] = time_verification(source)

    p50 = {name: round(statistics.median(values), 3) for name, values in timings.items()}
    base = p50["baseline_run_row_only"]
    result = {
        "benchmark": "audit record: cost per run while recording, and audit verify --all throughput",
        "command": "python -m bench.record",
        "tickets": args.tickets,
        "mix": [t.text for t in TICKETS],
        "events_per_run_mean": round(events_per_run, 1),
        "per_run_ms": {name: {"p50": p50[name], "p95": round(percentile(values, 0.95), 3)} for name, values in timings.items()},
        "record_overhead_per_run_p50_ms": {name: round(p50[name] - base, 3) for name in RECORDED},
        "record_overhead_per_event_ms": {name: round((p50[name] - base) / events_per_run, 3) for name in RECORDED},
        "ratio_vs_baseline_p50": {name: round(p50[name] / base, 2) for name in RECORDED},
        "verify_all": verification,
    }
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
