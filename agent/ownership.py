"""Whether this process may still drive a run: a queue worker holds a lease that can run out.

A worker that stalls (a long GC pause, SIGSTOP, a frozen VM) past its lease sees another worker
take the run over. When it wakes it must not write one more event or make one more call for
that run. The worker sets a `Lease` for the thread driving the run; the graph checks it before
every node's record write, which also comes before every tool call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class LeaseLost(RuntimeError):
    """Another worker owns the run now; this one stops driving it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"the lease on run {run_id} was lost; another worker drives it now")
        self.run_id = run_id


class Lease:
    """Held while renewed in time: lost when a renewal fails, or when the last one is older
    than the lease itself (the holder stalled; someone may have taken the run meanwhile)."""

    def __init__(self, run_id: str, lease_s: float) -> None:
        self.run_id = run_id
        self.lease_s = lease_s
        self._renewed = time.monotonic()
        self._lost = threading.Event()

    def renewed(self) -> None:
        self._renewed = time.monotonic()

    def lost(self) -> None:
        self._lost.set()

    def check(self) -> None:
        if self._lost.is_set() or time.monotonic() - self._renewed > self.lease_s:
            raise LeaseLost(self.run_id)


_current: ContextVar[Lease | None] = ContextVar("caseplan_lease", default=None)


@contextmanager
def holding(lease: Lease) -> Iterator[Lease]:
    """Runs driven inside this block check `lease` before each node's writes."""
    token = _current.set(lease)
    try:
        yield lease
    finally:
        _current.reset(token)


def check_lease() -> None:
    """Raise LeaseLost when the run being driven here belongs to another worker now (no-op
    outside a worker: the CLI and tests drive runs they own)."""
    lease = _current.get()
    if lease is not None:
        lease.check()
