"""`caseplan keys ...` and `caseplan serve` as a user runs them: real processes, real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CASEPLAN = str(Path(sys.executable).parent / "caseplan")


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CASEPLAN_DATA_DIR": str(data_dir)}
    return subprocess.run([CASEPLAN, *args], env=env, capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_keys_create_list_revoke_and_serve(tmp_path):
    created = cli(tmp_path, "keys", "create", "--role", "auditor", "--name", "Ada")
    assert created.returncode == 0, created.stderr
    key_id, secret = created.stdout.split()[0], created.stdout.split()[-1]
    assert key_id.startswith("key_") and secret.startswith("cpk_")
    listed = cli(tmp_path, "keys", "list")
    assert f"{key_id}  auditor   Ada  active" in listed.stdout and secret not in listed.stdout
    bad = cli(tmp_path, "keys", "create", "--role", "root", "--name", "x")
    assert bad.returncode == 2 and "unknown role 'root'" in bad.stderr

    port = free_port()
    env = {**os.environ, "CASEPLAN_DATA_DIR": str(tmp_path), "CASEPLAN__LOGGING__LEVEL": "INFO"}
    server = subprocess.Popen([CASEPLAN, "serve", "--port", str(port), "--workers", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read().decode()[-2000:] if server.poll() is not None else "no answer"
                time.sleep(0.2)
        headers = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{url}/v1/runs", headers=headers).status_code == 200
        assert cli(tmp_path, "keys", "revoke", key_id).returncode == 0
        assert httpx.get(f"{url}/v1/runs", headers=headers).status_code == 401  # revoked takes effect at once
    finally:
        server.terminate()
        server.wait(30)
    assert '"event": "request"' in server.stderr.read().decode()  # JSON log lines
