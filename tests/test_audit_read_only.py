"""An auditor reads and verifies a record copied to read-only media: the audit commands open
the SQLite file without writing anything (no WAL switch, no `-shm` file, no folder made)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from agent.runner import Runner
from agent.runtime import Runtime
from agent.schema import head_revision
from tests.conftest import make_settings
from tests.record_support import TICKETS, invoke


@pytest.fixture
def read_only_mount(tmp_path: Path):
    """A tmpfs that can be switched to read-only (mounting needs root, as in CI here)."""
    folder = tmp_path / "media"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to make read-only media here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=True)


def test_audit_commands_read_a_record_on_read_only_media(read_only_mount, tmp_path, embedder, local_model):
    env = {"CASEPLAN_DATA_DIR": str(tmp_path / "data"), "CASEPLAN__DATABASE__URL": f"sqlite:///{read_only_mount / 'caseplan.db'}"}
    runtime = Runtime.build(make_settings(tmp_path / "data", **env), embedder=embedder, local_model=local_model)
    run_id = Runner(runtime).submit(TICKETS[1]).run_id
    runtime.engine.dispose()  # the record is complete and closed, as when it was copied
    subprocess.run(["mount", "-o", "remount,ro", str(read_only_mount)], check=True)

    verified = invoke(env, "audit", "verify", "--all")
    assert verified.exit_code == 0 and "1 verified, 0 tampered" in verified.stdout, verified.output
    listed = invoke(env, "audit", "list", "--json")
    assert listed.exit_code == 0 and [run["id"] for run in json.loads(listed.stdout)] == [run_id]
    assert invoke(env, "stats").exit_code == 0
    assert invoke(env, "db", "current").stdout.split()[:2] == ["database:", head_revision()]
    missing = invoke({**env, "CASEPLAN__DATABASE__URL": f"sqlite:///{read_only_mount / 'nothing.db'}"}, "audit", "list")
    assert missing.exit_code == 2 and "there is no record database at" in missing.stderr
