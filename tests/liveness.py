"""Whether a call ends at all: for code that, broken, would run for hours (a read from a server
that never stops sending, a regex that backtracks on hostile text). The bounds are far above any
normal duration, so they check termination, not speed."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

LIVENESS_S = 30
REPO = Path(__file__).resolve().parent.parent


def finishes(call: Callable[[], Any], limit_s: float = LIVENESS_S) -> Any:  # noqa: ANN401 (whatever the call returns or raises)
    """The call's result or the exception it raised, provided it ends within `limit_s`. In a
    thread: only for calls that wait on I/O (a thread stuck in C code holding the GIL, like a
    backtracking regex, would stall the waiting test too; see `finishes_in_child`)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # noqa: BLE001 (handed to the test to inspect)
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(limit_s)
    assert outcome, f"still running after {limit_s}s"
    return outcome[0]


def finishes_in_child(code: str, limit_s: float = 4 * LIVENESS_S) -> None:
    """Run Python `code` in a child process that is killed after `limit_s`; it must exit 0."""
    try:
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=limit_s, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {limit_s}s: {code}") from None
    assert done.returncode == 0, done.stderr[-3000:]
