"""Queue workers: lease a run, drive it through the graph while heartbeating, then report it.

Workers are stateless; run as threads inside `caseplan serve` or as `caseplan worker`
processes on any machine that reaches the same database.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid

import structlog

from agent.db import UNAVAILABLE_ERRORS, unavailable_reason
from agent.ownership import Lease, LeaseLost, holding
from agent.runner import Runner, RunResult
from agent.service.metrics import Metrics
from agent.service.models import WorkItem
from agent.service.notify import CompletionNotifier
from agent.service.queue import WorkQueue
from agent.settings import ServiceSettings

log = structlog.get_logger(__name__)

FINISHED = ("completed", "escalated", "failed")
# A run that meets an unavailable database is left to its lease and resumed; after this many
# leases the error is taken as the run's own (a statement that always fails) and the run fails.
DATABASE_ATTEMPTS = 10
FAILING_WAIT_S = 10.0  # the longest wait between polls while every iteration fails


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        runner: Runner,
        queue: WorkQueue,
        settings: ServiceSettings,
        notifier: CompletionNotifier | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.runner = runner
        self.queue = queue
        self.settings = settings
        self.notifier = notifier
        self.metrics = metrics
        self.id = worker_id()

    def run_once(self) -> RunResult | None:
        """Take one run and drive it as far as it goes; None when the queue is empty."""
        item = self.queue.claim(self.id)
        if item is None:
            return None
        stop = threading.Event()
        lease = Lease(item.run_id, self.settings.lease_s)
        beat = threading.Thread(target=self._heartbeat, args=(lease, stop), daemon=True, name=f"heartbeat-{item.run_id}")
        beat.start()
        handed_back = True
        try:
            with holding(lease):
                return self._process(item)
        except LeaseLost:
            log.warning("lease lost: stopped driving the run; its new worker carries on", run_id=item.run_id, worker=self.id)
            return None
        except UNAVAILABLE_ERRORS as exc:
            # Not the run's fault: leave it leased, unrenewed, so a worker resumes it from its
            # checkpoint once the lease lapses (by then the database is likely back).
            log.error("database unavailable: the run resumes when its lease lapses", run_id=item.run_id, error=unavailable_reason(exc))
            handed_back = False
            return None
        finally:
            stop.set()
            beat.join()
            if handed_back:
                self.queue.complete(item.run_id, self.id, item.answer)

    def run_forever(self, stop: threading.Event) -> None:
        """Poll until `stop`. While iterations keep failing (the database is down, say) the
        wait doubles up to FAILING_WAIT_S and the traceback is logged once per streak, not
        every poll: a night's outage must not fill the disk with the same error."""
        log.info("worker started", worker=self.id)
        failures = 0
        while not stop.is_set():
            try:
                worked = self.run_once() is not None
            except Exception as exc:  # a broken database connection must not end the worker
                failures += 1
                if failures == 1:
                    log.exception("worker iteration failed", worker=self.id)
                else:
                    log.warning("worker iteration failed again", worker=self.id, failures=failures, error=type(exc).__name__)
                stop.wait(min(self.settings.poll_s * 2**failures, FAILING_WAIT_S))
                continue
            if failures:
                log.info("worker recovered", worker=self.id, after_failures=failures)
                failures = 0
            if not worked:
                stop.wait(self.settings.poll_s)
        log.info("worker stopped", worker=self.id)

    def _process(self, item: WorkItem) -> RunResult:
        store = self.runner.runtime.store
        log.info("run leased", run_id=item.run_id, worker=self.id, attempt=item.attempts, resuming=item.attempts > 1)
        seen = len(store.events(item.run_id))
        started = time.perf_counter()
        try:
            result = self.runner.continue_run(item.run_id, item.answer)
        except LeaseLost:
            raise
        except Exception as exc:  # a bug in one run must not take the worker down; the run says what happened
            if isinstance(exc, UNAVAILABLE_ERRORS) and item.attempts < DATABASE_ATTEMPTS:
                raise
            log.exception("run crashed", run_id=item.run_id)
            self.runner.close_failed(item.run_id, exc)  # the runner closed it already, unless the database was the trouble
            result = RunResult(run_id=item.run_id, status="failed", error=str(exc)[:500])
        elapsed = time.perf_counter() - started
        run = store.get_run(item.run_id)
        if self.metrics is not None:
            calls = [e.payload for e in store.events(item.run_id)[seen:] if e.kind == "model_call"]
            self.metrics.observe_run(result, run.template, elapsed, calls)
        if result.status in FINISHED and self.notifier is not None:
            self.notifier.run_finished(result, run.ticket_id)
        log.info("run handled", run_id=item.run_id, status=result.status, worker=self.id)
        return result

    def _heartbeat(self, lease: Lease, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_s):
            try:
                held = self.queue.heartbeat(lease.run_id, self.id)
            except UNAVAILABLE_ERRORS as exc:  # try again next beat; a lease not renewed in time counts as lost
                log.warning("heartbeat failed: database unavailable", run_id=lease.run_id, error=unavailable_reason(exc))
                continue
            if not held:
                lease.lost()
                return
            lease.renewed()


class WorkerPool:
    """N worker threads over one runtime (the local model serialises its own calls)."""

    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for worker in self.workers:
            thread = threading.Thread(target=worker.run_forever, args=(self.stop,), daemon=True, name=f"worker-{worker.id}")
            thread.start()
            self.threads.append(thread)

    def close(self, timeout: float = 30) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)
