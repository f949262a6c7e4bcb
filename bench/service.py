"""The service under load on this machine: accepted tickets per second on POST /v1/tickets,
and completed tickets per second end to end (accepted, leased, run, finished).

Each figure stands next to a baseline measured in the same run on the same runtime:
- accepting: the same work without HTTP (`store.create_run` + `queue.enqueue` in-process);
- end to end: the same tickets through `Runner.submit` in-process, one after another.

The load generator stops by itself: accepting runs for `--seconds` from `--clients` threads;
end to end posts `--tickets` tickets and waits until every run has finished (or `--timeout`).
Service and baseline alternate over `--rounds`, so whatever else loads the machine hits both.

    python -m bench.service [--seconds 6] [--clients 8] [--tickets 24] [--rounds 3] [--out bench/results/service.json]

The real models and SQLite files under a temporary folder, as the embedded default; uvicorn
on loopback with the in-process workers (`service.workers`).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from agent.runner import Runner
from agent.runtime import Runtime
from agent.service.app import create_app
from agent.service.keys import KeyStore
from agent.service.queue import WorkQueue
from agent.service.server import background_server
from agent.settings import load_settings
from bench.orchestration import TICKETS
from bench.results import write_result
from tools.sandbox.seed import seed_demo

FINISHED = ("completed", "escalated", "failed")


def build(folder: Path, parts: Runtime | None = None) -> Runtime:
    if parts is not None:  # the routing examples' embeddings, computed once by the warm runtime
        shutil.copytree(parts.settings.data_path / "cache", folder / "cache", dirs_exist_ok=True)
    settings = load_settings(env={"CASEPLAN_DATA_DIR": str(folder), "CASEPLAN__SERVICE__RATE_LIMIT_PER_S": "100000", "CASEPLAN__SERVICE__RATE_LIMIT_BURST": "100000"})
    runtime = Runtime.build(settings, embedder=parts.embedder if parts else None, local_model=parts.local_model if parts else None)
    seed_demo(runtime.sandbox)
    return runtime


def ticket_bodies(count: int) -> list[dict[str, Any]]:
    return [TICKETS[n % len(TICKETS)].model_dump(mode="json", exclude_none=True) for n in range(count)]


def accept_over_http(url: str, secret: str, seconds: float, clients: int) -> dict[str, Any]:
    """`clients` threads post as fast as answers come back, until the deadline."""
    counts = {"accepted": 0, "other": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    body = ticket_bodies(1)[0]

    def client() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as http:
            while time.monotonic() < deadline:
                status = http.post("/v1/tickets", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}).status_code
                with lock:
                    counts["accepted" if status == 202 else "other"] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {**counts, "seconds": round(elapsed, 2), "per_second": round(counts["accepted"] / elapsed, 1)}


def accept_in_process(runtime: Runtime, seconds: float) -> dict[str, Any]:
    """The baseline: what accepting costs without HTTP, auth, validation or idempotency."""
    queue = WorkQueue(runtime.engine, 30)
    body = ticket_bodies(1)[0]
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        queue.enqueue(runtime.store.create_run(body, runtime.versions).id)
        count += 1
    elapsed = time.perf_counter() - started
    return {"accepted": count, "seconds": round(elapsed, 2), "per_second": round(count / elapsed, 1)}


def end_to_end_over_http(url: str, secret: str, runtime: Runtime, count: int, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as http:
        ids = [http.post("/v1/tickets", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}).json()["run_id"] for body in ticket_bodies(count)]
        accepted = time.perf_counter() - started
        pending = set(ids)
        while pending and time.perf_counter() - started < timeout:
            pending = {run_id for run_id in pending if runtime.store.get_run(run_id).status not in FINISHED}
            time.sleep(0.05)
    elapsed = time.perf_counter() - started
    done = count - len(pending)
    return {"tickets": count, "finished": done, "accepted_in_s": round(accepted, 2), "seconds": round(elapsed, 2), "per_second": round(done / elapsed, 2)}


def end_to_end_in_process(runtime: Runtime, count: int) -> dict[str, Any]:
    runner = Runner(runtime)
    started = time.perf_counter()
    for ticket in (TICKETS[n % len(TICKETS)] for n in range(count)):
        runner.submit(ticket)
    elapsed = time.perf_counter() - started
    return {"tickets": count, "seconds": round(elapsed, 2), "per_second": round(count / elapsed, 2)}


def _merge(parts: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Rounds added up: counts and seconds, with the rate over the whole."""
    total = {name: round(sum(part[name] for part in parts), 2) for name in parts[0] if name != "per_second"}
    total["per_second"] = round(total[key] / total["seconds"], 2)
    total["rounds"] = len(parts)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6, help="accepting: seconds per side, split over the rounds")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tickets", type=int, default=24, help="end to end: tickets per side, split over the rounds")
    parser.add_argument("--rounds", type=int, default=3, help="service and baseline alternate, so load on the machine hits both alike")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, default=Path("bench/results/service.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        warm = build(root / "warm")
        for ticket in TICKETS:  # load the models and fill the routing cache, outside every timing
            Runner(warm).submit(ticket)

        accepting, direct = build(root / "accept", warm), build(root / "accept-direct", warm)
        secret = KeyStore(accepting.engine).create("platform", "bench")[1]
        http_rounds, direct_rounds = [], []
        with background_server(create_app(accepting, workers=0)) as url:
            for _ in range(args.rounds):
                http_rounds.append(accept_over_http(url, secret, args.seconds / args.rounds, args.clients))
                direct_rounds.append(accept_in_process(direct, args.seconds / args.rounds))
        http_accept, direct_accept = _merge(http_rounds, "accepted"), _merge(direct_rounds, "accepted")

        e2e, direct = build(root / "e2e", warm), build(root / "e2e-direct", warm)
        secret = KeyStore(e2e.engine).create("platform", "bench")[1]
        per_round = max(1, args.tickets // args.rounds)
        http_rounds, direct_rounds = [], []
        with background_server(create_app(e2e)) as url:
            for _ in range(args.rounds):
                http_rounds.append(end_to_end_over_http(url, secret, e2e, per_round, args.timeout))
                direct_rounds.append(end_to_end_in_process(direct, per_round))
        http_e2e, direct_e2e = _merge(http_rounds, "finished"), _merge(direct_rounds, "tickets")

    result = {
        "benchmark": "service",
        "settings": {"seconds": args.seconds, "clients": args.clients, "tickets": per_round * args.rounds, "rounds": args.rounds, "workers": warm.settings.service.workers},
        "accept": {
            "http_post_v1_tickets": http_accept,
            "baseline_in_process": direct_accept,
            "ratio_http_to_baseline": round(http_accept["per_second"] / direct_accept["per_second"], 3),
        },
        "end_to_end": {
            "service": http_e2e,
            "baseline_runner_in_process": direct_e2e,
            "ratio_service_to_baseline": round(http_e2e["per_second"] / direct_e2e["per_second"], 3),
        },
    }
    write_result(args.out, result)
    print(f"accepted/s over HTTP: {http_accept['per_second']} (in-process baseline {direct_accept['per_second']})")
    print(f"completed/s end to end: {http_e2e['per_second']} (Runner.submit baseline {direct_e2e['per_second']})")


if __name__ == "__main__":
    main()
