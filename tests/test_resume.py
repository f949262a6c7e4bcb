"""A run interrupted right after a side effect resumes from its checkpoint without repeating it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from agent.runner import Runner
from tests.crash_support import TICKET, SimulatedCrash, build
from tools.sandbox.models import SandboxOutboxEmail, SandboxResetRequest

REPO = Path(__file__).resolve().parent.parent


def reset_rows(runtime):
    with runtime.sandbox.session() as session:
        return session.exec(select(SandboxResetRequest)).all(), session.exec(select(SandboxOutboxEmail)).all()


def assert_resumed_once(runtime, run_id):
    result = Runner(runtime).resume(run_id)
    assert result.status == "completed"
    resets, mails = reset_rows(runtime)
    assert len(resets) == 1 and len(mails) == 1
    tool_calls = [e.payload["step_id"] for e in runtime.store.events(run_id) if e.kind == "tool_call"]
    assert tool_calls.count("reset") == 1, tool_calls
    assert tool_calls[-2:] == ["after_reset", "update"]


def test_in_process_crash_after_reset_resumes_without_a_second_reset(tmp_path):
    runtime = build(tmp_path)
    with pytest.raises(SimulatedCrash):
        Runner(runtime).submit(TICKET, run_id="run_crash_inproc")
    assert runtime.store.get_run("run_crash_inproc").status == "running"
    resets, _ = reset_rows(runtime)
    assert len(resets) == 1, "the reset happened before the crash"
    assert_resumed_once(runtime, "run_crash_inproc")


def test_killed_process_resumes_in_a_new_process_without_a_second_reset(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tests.crash_support", str(tmp_path), "run_killed"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    runtime = build(tmp_path)
    assert runtime.store.get_run("run_killed").status == "running"
    assert len(reset_rows(runtime)[0]) == 1
    assert_resumed_once(runtime, "run_killed")
