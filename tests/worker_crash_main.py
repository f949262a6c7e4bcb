"""A `caseplan worker`-like process whose run SIGKILLs it right after the password reset
(tests/crash_support.py), leaving its lease to expire for another worker."""

from __future__ import annotations

import sys
from pathlib import Path

from agent.runner import Runner
from agent.service.queue import WorkQueue
from agent.service.worker import Worker
from agent.settings import ServiceSettings
from tests.crash_support import build

LEASE = ServiceSettings(lease_s=2, heartbeat_s=0.3, poll_s=0.05)

if __name__ == "__main__":
    runtime = build(Path(sys.argv[1]), hard=True)
    Worker(Runner(runtime), WorkQueue(runtime.engine, LEASE.lease_s), LEASE).run_once()
