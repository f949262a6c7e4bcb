"""`caseplan run` with a config that points the ticket tools at a Zendesk-style server on
loopback: a real subprocess of the CLI, the secret from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select
from typer.testing import CliRunner

from agent.cli import app
from agent.db import make_engine
from agent.record import Run
from tests.loopback_support import ZENDESK_AUTH, ZENDESK_TOKEN_ENV, tools_config, zendesk_api
from tests.servers.base import LoopbackServer

CASEPLAN = str(Path(sys.executable).parent / "caseplan")  # the venv the tests run in
RESET = "I forgot my password and can't log in, my email is jane@example.com"


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "zendesk.yaml"
    path.write_text(yaml.safe_dump(tools_config(zendesk=url)))
    return path


@pytest.mark.slow
def test_caseplan_run_updates_the_ticket_on_the_zendesk_server(tmp_path):
    api = zendesk_api()
    with LoopbackServer(api) as server:
        config = write_config(tmp_path, server.url)
        env = {**os.environ, "CASEPLAN_DATA_DIR": str(tmp_path / "data"), ZENDESK_TOKEN_ENV: "zd-secret"}
        proc = subprocess.run(
            [CASEPLAN, "--config", str(config), "run", RESET, "--ticket-id", "1003"], env=env, capture_output=True, text=True, timeout=300
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "route:  password_reset" in proc.stdout and "status: completed" in proc.stdout, proc.stdout
    assert api.tickets[1003]["status"] == "pending"
    [comment] = api.comments[1003]
    assert comment["public"] and "reset link" in comment["body"]
    [put] = api.writes()
    assert put.method == "PUT" and put.path == "/api/v2/tickets/1003.json"
    assert put.headers["authorization"] == ZENDESK_AUTH and len(put.headers["idempotency-key"]) == 64
    assert put.body["ticket"]["status"] == "pending" and put.body["ticket"]["comment"]["public"] is True
    # The requester came from the helpdesk's ticket (no --requester given): read with include=users.
    assert any(seen.method == "GET" and seen.query.get("include") == "users" for seen in api.requests)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["run", RESET], {ZENDESK_TOKEN_ENV: "zd-secret"}, "the ticket tools use a real helpdesk: pass --ticket-id"),
        (["run", RESET, "--ticket-id", "1003"], {}, f"environment variable {ZENDESK_TOKEN_ENV} (named by tools.zendesk.token_env) is not set"),
        (["tools", "list"], {}, f"environment variable {ZENDESK_TOKEN_ENV}"),
        (["demo"], {ZENDESK_TOKEN_ENV: "zd-secret"}, "the demo files its tickets in the sandbox helpdesk"),
    ],
)
def test_misconfigured_helpdesk_is_one_clear_error(tmp_path, monkeypatch, args, env, message):
    monkeypatch.delenv(ZENDESK_TOKEN_ENV, raising=False)
    api = zendesk_api()
    with LoopbackServer(api) as server:
        config = write_config(tmp_path, server.url)
        result = CliRunner().invoke(app, ["--config", str(config), *args], env={"CASEPLAN_DATA_DIR": str(tmp_path / "data"), **env})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert api.writes() == []
    record = tmp_path / "data" / "caseplan.db"
    if record.exists():
        with Session(make_engine(f"sqlite:///{record}")) as session:
            assert session.exec(select(Run)).all() == [], "nothing is stored for a run that could not start"
