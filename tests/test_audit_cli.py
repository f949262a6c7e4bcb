"""The auditor's commands as typed: filters, the timeline, JSON output, and usage errors that
get one `error:` line and exit 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from agent.keyfile import decode_key
from agent.vault import Vault
from tests.record_support import TICKETS, cli_env, execute, invoke


@pytest.fixture
def three_runs(runner, runtime, settings):
    reset, status, pizza = (runner.submit(TICKETS[i]) for i in (0, 1, 6))
    old = datetime.now(UTC) - timedelta(days=3)
    execute(runtime.engine, "UPDATE run SET created_at = :at WHERE id = :r", at=old, r=pizza.run_id)
    execute(runtime.engine, "UPDATE runevent SET created_at = :at WHERE run_id = :r", at=old, r=pizza.run_id)  # a run of 3 days ago throughout
    return cli_env(settings), reset.run_id, status.run_id, pizza.run_id


def listed(env, *args):
    result = invoke(env, "audit", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return [run["id"] for run in json.loads(result.stdout)]


def test_list_filters_by_date_status_and_template(three_runs):
    env, reset, status, pizza = three_runs
    assert set(listed(env)) == {reset, status, pizza}
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert set(listed(env, "--since", yesterday)) == {reset, status}
    assert listed(env, "--status", "escalated") == [pizza]
    assert listed(env, "--template", "ticket_status") == [status]
    assert listed(env, "--limit", "1") == [status]  # newest first
    table = invoke(env, "audit", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["run", "created", "(UTC)"] and pizza in table and "out_of_scope" in table


def test_show_prints_the_masked_timeline(three_runs):
    env, reset, _, _ = three_runs
    result = invoke(env, "audit", "show", reset)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"run:      {reset}  completed  password_reset  (record format 3, sha256, root ")
    kinds = [line.split()[2] for line in lines if line.startswith("   ") and line.split()[0].isdigit()]
    assert kinds[:4] == ["intake", "route", "plan", "policy_decision"] and kinds[-1] == "reply"
    assert "jane@example.com" not in result.stdout and "[email:" in result.stdout
    shown = json.loads(invoke(env, "audit", "show", reset, "--json").stdout)
    assert shown["run"]["id"] == reset and [e["seq"] for e in shown["events"]] == list(range(1, 16))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "show", "run_nope"], "unknown run id 'run_nope'"),
        (["audit", "list", "--since", "last tuesday"], "--since 'last tuesday' is not an ISO date"),
        (["audit", "verify"], "give a RUN_ID, --all or --file"),
        (["audit", "verify", "run_x", "--all"], "give a RUN_ID, --all or --file"),
        (["audit", "verify", "run_x", "--since", "2026-01-01"], "--since goes with --all"),
        (["audit", "verify", "--file", "/nonexistent/export.jsonl"], "/nonexistent/export.jsonl: cannot read"),
        (["audit", "export", "run_x", "--status", "failed"], "give a RUN_ID or filters, not both"),
        (["replay"], "give a RUN_ID or --all"),
        (["replay", "run_nope"], "unknown run id 'run_nope'"),
        (["replay", "run_x", "--since", "2026-01-01"], "--since goes with --all"),
    ],
)
def test_usage_errors_get_one_line_and_exit_2(runtime, settings, args, message):
    result = invoke(cli_env(settings), *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_replay_of_a_run_in_progress_is_refused(runtime, settings):
    waiting = runtime.store.create_run(TICKETS[1].model_dump(mode="json"), runtime.versions).id
    result = invoke(cli_env(settings), "replay", waiting)
    assert result.exit_code == 2 and f"run {waiting} is still in progress (status received)" in result.stderr
    everything = invoke(cli_env(settings), "replay", "--all")
    assert everything.exit_code == 0 and f"skipped: run {waiting} is still in progress" in everything.stdout


def test_keygen_makes_distinct_usable_keys(settings):
    first, second = (invoke(cli_env(settings), "audit", "keygen").stdout.strip() for _ in range(2))
    assert first != second
    assert Vault(decode_key(first, "test", "vault key")).key_id != Vault(decode_key(second, "test", "vault key")).key_id
