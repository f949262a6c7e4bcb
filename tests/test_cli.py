"""The command line as a user types it: real processes, real models, clear errors with exit 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from agent.cli import app
from agent.db import make_engine
from agent.record import Run
from tools.sandbox.models import SandboxResetRequest, SandboxTicket

CASEPLAN = str(Path(sys.executable).parent / "caseplan")  # the venv the tests run in
RESET = "I forgot my password and can't log in, my email is jane@example.com"


def run_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CASEPLAN_DATA_DIR": str(data_dir)}
    return subprocess.run([CASEPLAN, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_run_resets_password_and_same_ticket_gives_same_plan_hash(tmp_path):
    first = run_cli(tmp_path, "run", RESET)
    assert first.returncode == 0, first.stderr
    assert "route:  password_reset" in first.stdout
    run_id = re.search(r"^run id: (run_\w+)$", first.stdout, re.MULTILINE).group(1)
    first_hash = re.search(r"hash ([0-9a-f]{64})", first.stdout).group(1)
    second = run_cli(tmp_path, "run", RESET)
    assert re.search(r"hash ([0-9a-f]{64})", second.stdout).group(1) == first_hash

    sandbox = make_engine(f"sqlite:///{tmp_path / 'sandbox.db'}")
    with Session(sandbox) as session:
        assert len(session.exec(select(SandboxResetRequest)).all()) == 2  # two runs, two requests
        filed = session.exec(select(SandboxTicket).where(SandboxTicket.description == RESET)).one()
        assert filed.status == "pending" and filed.requester_email == "jane@example.com"
    with Session(make_engine(f"sqlite:///{tmp_path / 'caseplan.db'}")) as session:
        run = session.get(Run, run_id)
        assert run.status == "completed" and run.plan_hash == first_hash


@pytest.mark.slow
def test_run_json_output_and_demo(tmp_path):
    result = run_cli(tmp_path, "run", "How long does standard shipping take?", "--requester", "omar@example.com", "--json")
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "completed" and body["citations"]
    demo = run_cli(tmp_path, "demo")
    assert demo.returncode == 0, demo.stderr
    summary = demo.stdout.split("=== summary")[1]
    assert summary.count("completed") == 4 and summary.count("escalated") == 3
    assert "to jane@example.com: Reset your password" in demo.stdout


@pytest.fixture
def cli(tmp_path):
    return CliRunner(), {"CASEPLAN_DATA_DIR": str(tmp_path / "data")}


def stored_runs(tmp_path) -> int:
    db = tmp_path / "data" / "caseplan.db"
    if not db.exists():
        return 0
    with Session(make_engine(f"sqlite:///{db}")) as session:
        return len(session.exec(select(Run)).all())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", ""], "text: String should have at least 1 character"),
        (["run", "x" * 20001], "ticket text is 20001 characters; the limit is 20000"),
        (["run", "hello", "--requester", "not-an-email"], "requester_email: String should match pattern"),
        (["run", "hello", "--ticket-id", "../../etc"], "ticket_id: String should match pattern"),
        (["run"], "give the ticket text or --file"),
        (["plans", "show", "nope"], "unknown template 'nope'"),
        (["tools", "schema", "rm_rf"], "unknown tool 'rm_rf'"),
        (["resume", "run_missing"], "unknown run id 'run_missing'"),
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_2(cli, tmp_path, args, message):
    runner, env = cli
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert stored_runs(tmp_path) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe{}", "ticket is not valid UTF-8"),
        (b'{"text": ', "ticket is not valid JSON"),
        (b'{"text": 12}', "text: Input should be a valid string"),
        (b'{"text": "hi", "tags": "vip"}', "tags: Input should be a valid list"),
        (b'{"text": "hi", "priority": "urgent"}', "priority: Extra inputs are not permitted"),
        (b'["text"]', "a ticket must be a JSON object"),
    ],
)
def test_bad_ticket_files(cli, tmp_path, content, message):
    runner, env = cli
    path = tmp_path / "ticket.json"
    path.write_bytes(content)
    result = runner.invoke(app, ["run", "--file", str(path)], env=env)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert stored_runs(tmp_path) == 0


def test_bad_config_is_reported_with_its_file(cli, tmp_path):
    runner, env = cli
    config = tmp_path / "bad.yaml"
    config.write_text("executor:\n  step_timeout_s: -1\n")
    result = runner.invoke(app, ["--config", str(config), "tools", "list"], env=env)
    assert result.exit_code == 2 and str(config) in result.stderr and "step_timeout_s" in result.stderr


def test_tools_schema_validates_the_documented_example(cli):
    runner, env = cli
    result = runner.invoke(app, ["tools", "schema", "password_reset"], env=env)
    schema = json.loads(result.stdout)
    jsonschema.validate({"user_id": "u_1001", "verification_id": "ver_0123", "revoke_sessions": True}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"user_id": "u_1001", "verification_id": "v", "password": "hunter2"}, schema)


def test_describing_tools_and_templates_opens_no_database_cluster_or_index(cli, tmp_path):
    """`plans validate` in a CI job with no database or cluster in reach; on a fresh folder the
    demo knowledge base is not ingested just to list the tools."""
    runner, env = cli
    data = tmp_path / "fresh"
    away = {
        **env,
        "CASEPLAN_DATA_DIR": str(data),
        "CASEPLAN__DATABASE__URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
        "CASEPLAN__SANDBOX__URL": "postgresql+psycopg://nobody@127.0.0.1:9/none",
        "CASEPLAN__KNOWLEDGE__BACKEND": "opensearch",
        "CASEPLAN__KNOWLEDGE__OPENSEARCH__URL": "http://127.0.0.1:9",
    }
    for command in (["tools", "list"], ["tools", "schema", "knowledge_search"], ["plans", "list"], ["plans", "validate"], ["policies", "validate"]):
        result = runner.invoke(app, command, env=away)
        assert result.exit_code == 0, (command, result.stderr)
    assert "knowledge_search   read-only     local" in runner.invoke(app, ["tools", "list"], env=away).stdout
    local = runner.invoke(app, ["tools", "list"], env={**env, "CASEPLAN_DATA_DIR": str(data)})
    assert local.exit_code == 0 and not (data / "knowledge").exists() and not (data / "sandbox.db").exists()


def test_plans_list_and_show(cli):
    runner, env = cli
    listing = runner.invoke(app, ["plans", "list"], env=env)
    assert "password_reset    v1  ticket_lookup -> account_lookup -> verify_identity -> password_reset -> ticket_update" in listing.stdout
    shown = runner.invoke(app, ["plans", "show", "password_reset", "--json"], env=env)
    assert json.loads(shown.stdout)["abcd_flow"] == "recover_password"
