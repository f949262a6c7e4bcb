"""The work queue: every run is leased by one worker at a time; a worker killed in the middle
of a run loses its lease, and another worker finishes the run with exactly one side effect."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlmodel import select

from agent.db import make_engine
from agent.runner import Runner
from agent.schema import ensure_schema
from agent.service.models import WorkItem
from agent.service.queue import WorkQueue
from agent.service.worker import DATABASE_ATTEMPTS, Worker
from tests.conftest import make_settings
from tests.crash_support import TICKET, build
from tests.worker_crash_main import LEASE
from tools.sandbox.models import SandboxOutboxEmail, SandboxResetRequest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def queue_engine(tmp_path, database_env):
    engine = make_engine(make_settings(tmp_path / "data", **database_env).database_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()


def test_concurrent_workers_each_claim_a_run_once(queue_engine):
    queue = WorkQueue(queue_engine, lease_s=60)
    for n in range(30):
        queue.enqueue(f"run_{n:02d}")
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(owner: str) -> None:
        while (item := queue.claim(owner)) is not None:
            with lock:
                claimed.append(item.run_id)

    threads = [threading.Thread(target=drain, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == [f"run_{n:02d}" for n in range(30)]
    assert queue.depth() == {"queued": 0, "leased": 30}


def test_an_expired_lease_passes_to_another_worker(queue_engine):
    queue = WorkQueue(queue_engine, lease_s=0.3)
    queue.enqueue("run_a")
    first = queue.claim("dead")
    assert first is not None and queue.claim("other") is None  # held
    assert queue.heartbeat("run_a", "dead")
    time.sleep(0.5)
    second = queue.claim("other")
    assert second is not None and second.run_id == "run_a" and second.attempts == 2
    assert not queue.heartbeat("run_a", "dead") and not queue.complete("run_a", "dead")  # the dead one lost it
    assert queue.complete("run_a", "other")
    queue.enqueue("run_a", answer={"approved": True})  # an approval answer queues it again
    again = queue.claim("third")
    assert again is not None and again.answer == {"approved": True}
    assert queue.complete("run_a", "third", again.answer) and queue.claim("fourth") is None  # consumed


def test_an_answer_for_a_held_run_waits_for_its_worker(queue_engine):
    queue = WorkQueue(queue_engine, lease_s=60)
    queue.enqueue("run_b")
    assert queue.claim("busy") is not None
    queue.enqueue("run_b", answer={"approved": False})  # decided while the worker still drives the run
    assert queue.claim("other") is None  # never two workers on one run
    assert queue.complete("run_b", "busy")
    resumed = queue.claim("other")
    assert resumed is not None and resumed.answer == {"approved": False}


def test_killed_worker_run_is_finished_by_another_with_one_side_effect(tmp_path):
    runtime = build(tmp_path)  # marker absent: the first worker to run the crash step dies
    run = runtime.store.create_run(TICKET.model_dump(mode="json"), runtime.versions)
    queue = WorkQueue(runtime.engine, LEASE.lease_s)
    queue.enqueue(run.id)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.run([sys.executable, "-m", "tests.worker_crash_main", str(tmp_path)], cwd=REPO, env=env, capture_output=True, timeout=300)
    assert worker.returncode == -9, worker.stderr.decode()[-2000:]  # SIGKILL in the middle of the run
    with runtime.sandbox.session() as session:
        assert len(session.exec(select(SandboxResetRequest)).all()) == 1  # the reset happened before the kill
    assert runtime.store.get_run(run.id).status == "running"

    survivor = Worker(Runner(runtime), queue, LEASE)
    deadline = time.monotonic() + 30
    while (result := survivor.run_once()) is None:  # waits out the dead worker's lease
        assert time.monotonic() < deadline, "the dead worker's lease never expired"
        time.sleep(0.1)
    assert result.run_id == run.id and result.status == "completed", result
    with runtime.sandbox.session() as session:
        assert len(session.exec(select(SandboxResetRequest)).all()) == 1
        assert len(session.exec(select(SandboxOutboxEmail)).all()) == 1
    with runtime.engine.connect() as conn:
        item = conn.execute(select(WorkItem.__table__).where(WorkItem.__table__.c.run_id == run.id)).mappings().one()
    assert item["attempts"] == 2 and item["state"] == "done"
    assert runtime.store.get_run(run.id).status == "completed"


def test_a_worker_that_stalled_past_its_lease_stops_driving_the_run(tmp_path):
    """Another worker took the run while this one was stalled: when it wakes it writes nothing
    more to the run and leaves the lease where it is."""
    runtime = build(tmp_path)
    run = runtime.store.create_run(TICKET.model_dump(mode="json"), runtime.versions)
    queue = WorkQueue(runtime.engine, lease_s=0.4)
    queue.enqueue(run.id)
    settings = LEASE.model_copy(update={"lease_s": 0.4, "heartbeat_s": 0.1})
    stalled = Worker(Runner(runtime), queue, settings)
    route = runtime.router.route
    table = WorkItem.__table__

    def stall_then_route(ticket):  # noqa: ANN001, ANN202
        with runtime.engine.begin() as conn:  # meanwhile the lease ran out and another worker took the run
            conn.execute(table.update().where(table.c.run_id == run.id).values(lease_owner="other-worker"))
        time.sleep(0.6)
        return route(ticket)

    runtime.router.route = stall_then_route
    assert stalled.run_once() is None
    assert [event.kind for event in runtime.store.events(run.id)] == ["intake"]  # nothing after the stall
    assert runtime.store.get_run(run.id).status == "running"  # not marked failed: the run is not over
    with runtime.engine.connect() as conn:
        item = conn.execute(select(table).where(table.c.run_id == run.id)).mappings().one()
    assert (item["state"], item["lease_owner"]) == ("leased", "other-worker")


def test_a_database_error_mid_run_leaves_the_run_to_its_lease_until_it_looks_permanent(tmp_path):
    """The database went away mid-run (here: SQLite reports the file locked while the router
    runs). The run is not the culprit: it is not marked failed, its queue entry stays leased so
    a worker resumes it when the lease lapses. After DATABASE_ATTEMPTS leases the error is taken
    as the run's own and the run fails, so one run cannot loop for ever."""
    runtime = build(tmp_path)
    run = runtime.store.create_run(TICKET.model_dump(mode="json"), runtime.versions)
    queue = WorkQueue(runtime.engine, lease_s=0.2)
    queue.enqueue(run.id)
    worker = Worker(Runner(runtime), queue, LEASE.model_copy(update={"lease_s": 0.2, "heartbeat_s": 0.05}))

    def locked(ticket):  # noqa: ANN001, ANN202
        raise sqlite3.OperationalError("database is locked")

    runtime.router.route = locked
    table = WorkItem.__table__

    def queue_entry():  # noqa: ANN202
        with runtime.engine.connect() as conn:
            return conn.execute(select(table).where(table.c.run_id == run.id)).mappings().one()

    assert worker.run_once() is None
    assert runtime.store.get_run(run.id).status == "running"
    assert (queue_entry()["state"], queue_entry()["attempts"]) == ("leased", 1)
    time.sleep(0.3)  # the lease lapses
    with runtime.engine.begin() as conn:  # as if it had lapsed DATABASE_ATTEMPTS - 1 times already
        conn.execute(table.update().where(table.c.run_id == run.id).values(attempts=DATABASE_ATTEMPTS - 1))
    result = worker.run_once()
    assert result is not None and result.status == "failed"
    assert "OperationalError: database is locked" in runtime.store.get_run(run.id).error
    assert queue_entry()["state"] == "done"


def test_a_worker_whose_every_iteration_fails_backs_off_instead_of_flooding_the_log():
    """The database down all night: the traceback once per streak and waits doubling up to a
    bound, not an error every poll; the first success resets both."""

    class Failing(Worker):
        def __init__(self, failures: int) -> None:  # only what run_forever reads
            self.id, self.settings, self.calls, self.failures = "w-test", make_settings(Path("unused")).service.model_copy(update={"poll_s": 0.05}), 0, failures

        def run_once(self):  # noqa: ANN202
            self.calls += 1
            if self.calls <= self.failures:
                raise sqlite3.OperationalError("unable to open database file")
            return None

    stop = threading.Event()
    worker = Failing(failures=10**6)
    thread = threading.Thread(target=worker.run_forever, args=(stop,))
    thread.start()
    time.sleep(1.6)  # without backoff: 32 polls; with it: 0.1 + 0.2 + 0.4 + 0.8 s of waiting
    stop.set()
    thread.join(5)
    assert 3 <= worker.calls <= 6, worker.calls

    recovering = Failing(failures=2)
    stop = threading.Event()
    thread = threading.Thread(target=recovering.run_forever, args=(stop,))
    thread.start()
    time.sleep(1.0)  # two failures (0.1 + 0.2 s), then polls every 0.05 s again
    stop.set()
    thread.join(5)
    assert recovering.calls > 8, recovering.calls
