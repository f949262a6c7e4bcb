"""Tamper evidence: every way of editing a stored run is caught by `audit verify`, naming the
run and the event; untouched runs verify. Real runs, real database (SQLite, or PostgreSQL
when CASEPLAN_TEST_DATABASE_URL is set), the real CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from agent.audit import AuditSource, report_run
from agent.integrity import GENESIS_HASH, Signer, event_digest, root_digest, run_outcome
from agent.record import Run, RunEvent
from tests.record_support import TICKETS, cli_env, execute, invoke, swap_events

SIGNING_KEY = "CASEPLAN_RECORD_SIGNING_KEY"


@pytest.fixture
def recorded(runner, runtime, settings):
    """A password reset (15 events) and a ticket-status run, both finished."""
    reset = runner.submit(TICKETS[0])
    status = runner.submit(TICKETS[1])
    assert reset.status == status.status == "completed"
    assert len(runtime.store.events(reset.run_id)) == 15
    return runtime, cli_env(settings), reset.run_id, status.run_id


def corrupt(runtime, run_id):
    # PostgreSQL's json type refuses text that is not JSON, so there the damage is a payload of the wrong shape.
    damaged = '"{\\"ticket\\": {\\"text\\": \\"I forg"' if runtime.engine.dialect.name == "postgresql" else '{"ticket": {"text": "I forg'
    execute(runtime.engine, "UPDATE runevent SET payload = :p WHERE run_id = :r AND seq = 1", p=damaged, r=run_id)


TAMPERING = {
    # name: (edit, event the report must name, what it must say)
    "edit a payload": (
        lambda rt, r: execute(
            rt.engine, "UPDATE runevent SET payload = :p WHERE run_id = :r AND seq = 5", r=r, p=json.dumps({"email": "eve@evil.test"})
        ),
        "event 5 (tool_call)",
        "hash does not match its contents",
    ),
    "delete an event": (
        lambda rt, r: execute(rt.engine, "DELETE FROM runevent WHERE run_id = :r AND seq = 6", r=r),
        "event 6 missing",
        "deleted",
    ),
    "delete the last event": (
        lambda rt, r: execute(rt.engine, "DELETE FROM runevent WHERE run_id = :r AND seq = 15", r=r),
        "chain ending at event 14 (tool_result)",
        "root hash does not match",
    ),
    "reorder two events": (lambda rt, r: swap_events(rt.engine, r, 4, 5), "event 4 (tool_call)", "does not link"),
    "change the root hash": (
        lambda rt, r: execute(rt.engine, "UPDATE run SET root_hash = :h WHERE id = :r", h="ab" * 32, r=r),
        "chain ending at event 15 (reply)",
        "root hash does not match",
    ),
    "edit the run row": (
        lambda rt, r: execute(rt.engine, "UPDATE run SET reply = 'All done, nothing was reset.' WHERE id = :r", r=r),
        "chain ending at event 15 (reply)",
        "the run row was changed",
    ),
    "corrupt a payload": (corrupt, "event 1 (intake)", "truncated or corrupted"),
    "move the run to another date": (
        lambda rt, r: execute(rt.engine, "UPDATE run SET created_at = :at WHERE id = :r", at="2020-01-01 00:00:00", r=r),
        "chain ending at event 15 (reply)",
        "the run row was changed",
    ),
    "give the run another ticket id": (
        lambda rt, r: execute(rt.engine, "UPDATE run SET ticket_id = '9999' WHERE id = :r", r=r),
        "chain ending at event 15 (reply)",
        "the run row was changed",
    ),
    "nest a payload too deep to read": (
        lambda rt, r: execute(rt.engine, "UPDATE runevent SET payload = :p WHERE run_id = :r AND seq = 2", p='{"x": ' + "[" * 2000 + "]" * 2000 + "}", r=r),
        "event 2",
        "nested too deeply",
    ),
}


@pytest.mark.parametrize("how", TAMPERING)
def test_tampering_is_found_naming_the_run_and_event(recorded, how):
    runtime, env, tampered, untouched = recorded
    assert invoke(env, "audit", "verify", tampered).exit_code == 0
    edit, event, problem = TAMPERING[how]
    edit(runtime, tampered)

    result = invoke(env, "audit", "verify", tampered)
    assert result.exit_code == 1, result.output
    assert f"TAMPERED: run {tampered}" in result.stdout and event in result.stdout and problem in result.stdout, result.stdout

    clean = invoke(env, "audit", "verify", untouched)
    assert clean.exit_code == 0 and f"verified: run {untouched}" in clean.stdout

    everything = invoke(env, "audit", "verify", "--all")
    assert everything.exit_code == 1
    assert f"run {tampered}" in everything.stdout and event in everything.stdout
    assert "checked 2 runs" in everything.stdout and "1 verified, 1 tampered" in everything.stdout

    as_json = json.loads(invoke(env, "audit", "verify", tampered, "--json").stdout)
    assert as_json["status"] == "tampered" and as_json["findings"][0]["run_id"] == tampered
    assert all(finding["seq"] is not None for finding in as_json["findings"])


def rewrite_history(engine, run_id, seq, payload, signer, chain=None):
    """What someone with database write access but no signing key can do: edit an event and
    recompute every hash after it, and the root, with plain sha256."""
    runs, events = Run.__table__, RunEvent.__table__
    with engine.begin() as conn:
        if chain:
            conn.execute(update(runs).where(runs.c.id == run_id).values(chain=chain))
        run = conn.execute(select(runs).where(runs.c.id == run_id)).mappings().one()
        rows = conn.execute(select(events).where(events.c.run_id == run_id).order_by(events.c.seq)).mappings().all()
        previous = GENESIS_HASH
        for row in rows:
            body = payload if row["seq"] == seq else row["payload"]
            digest = event_digest(signer, previous, run_id, row["seq"], row["kind"], row["node"], body, row["versions"], row["created_at"])
            conn.execute(update(events).where(events.c.id == row["id"]).values(payload=body, prev_hash=previous, hash=digest))
            previous = digest
        outcome = run_outcome(run_id, dict(run), rows[-1]["seq"], run["record_version"], run["chain"])
        conn.execute(update(runs).where(runs.c.id == run_id).values(root_hash=root_digest(signer, previous, outcome)))


FORGED = {"step_id": "pull_up_account", "tool": "account_lookup", "args": {"email": "eve@evil.test"}}


def test_a_plain_chain_can_be_recomputed_by_a_writer(recorded):
    """Why the signing key exists: without it, a consistent rewrite verifies."""
    runtime, env, run_id, _ = recorded
    rewrite_history(runtime.engine, run_id, 5, FORGED, Signer())
    assert invoke(env, "audit", "verify", run_id).exit_code == 0


@pytest.fixture
def signing_key(monkeypatch):
    """Set before the runtime is built (list it first), as an operator would."""
    monkeypatch.setenv(SIGNING_KEY, "correct horse battery staple")


def test_a_rehashed_payload_of_the_wrong_shape_is_not_replayed(recorded):
    """A writer who recomputes a plain chain can make odd data verify; replay refuses it in one line."""
    runtime, env, reset, _ = recorded
    result = next(e for e in runtime.store.events(reset) if e.kind == "tool_result")
    rewrite_history(runtime.engine, reset, result.seq, {k: v for k, v in result.payload.items() if k != "status"}, Signer())
    execute(runtime.engine, "DELETE FROM piivault WHERE ref = :r", r=f"event:{reset}:{result.seq}")  # its original too
    assert invoke(env, "audit", "verify", reset).exit_code == 0
    replayed = invoke(env, "replay", reset)
    assert replayed.exit_code == 2 and "Traceback" not in replayed.output, replayed.output
    assert "cannot be replayed" in replayed.stderr and "KeyError" in replayed.stderr


def _set_payload(runtime, run_id, kind, change) -> None:  # noqa: ANN001
    event = next(e for e in runtime.store.events(run_id) if e.kind == kind)
    execute(runtime.engine, "UPDATE runevent SET payload = :p WHERE id = :i", p=json.dumps(change(event.payload)), i=event.id)


def test_reading_tools_show_odd_payloads_instead_of_crashing(recorded):
    """What `audit verify` reports as tampering, show, explain, stats and scan still display."""
    runtime, env, reset, status = recorded
    _set_payload(runtime, reset, "route", lambda p: {**p, "confidence": "high"})
    _set_payload(runtime, reset, "policy_decision", lambda p: {**p, "steps": [1]})
    _set_payload(runtime, status, "intake", lambda p: {**p, "guard": "x"})
    execute(runtime.engine, "UPDATE run SET route = :r WHERE id = :i", r="[1]", i=status)
    shown = invoke(env, "audit", "show", reset)
    assert shown.exit_code == 0 and "(not in the shape caseplan writes)" in shown.stdout, shown.output
    for run_id in (reset, status):
        explained = invoke(env, "policies", "explain", run_id)
        assert explained.exit_code == 0 and "not in the shape caseplan writes" in explained.stdout, explained.output
    assert invoke(env, "stats").exit_code == 0
    assert invoke(env, "audit", "verify", "--all").exit_code == 1
    if runtime.engine.dialect.name == "sqlite":  # PostgreSQL's json type refuses text that is not JSON
        execute(runtime.engine, "UPDATE runevent SET payload = '{abc' WHERE run_id = :r AND seq = 2", r=reset)
        execute(runtime.engine, "UPDATE run SET ticket = '{abc' WHERE id = :r", r=status)
        assert invoke(env, "stats").exit_code == 0
        scanned = invoke(env, "scan")
        assert scanned.exit_code in (0, 1) and "Traceback" not in scanned.output, scanned.output


def test_a_signed_chain_cannot_be_rewritten_without_the_key(signing_key, runner, runtime, settings):
    signed = runner.submit(TICKETS[0]).run_id
    assert runtime.store.get_run(signed).chain.startswith("hmac-sha256:")
    env = cli_env(settings)
    assert invoke(env, "audit", "verify", signed).exit_code == 0

    rewrite_history(runtime.engine, signed, 5, FORGED, Signer())
    result = invoke(env, "audit", "verify", signed)
    assert result.exit_code == 1 and f"run {signed} event 5 (tool_call)" in result.stdout
    assert "rewritten without the signing key" in result.stdout


def test_downgrading_a_signed_run_to_plain_sha256_is_caught_when_signatures_are_required(signing_key, runner, runtime, settings):
    signed = runner.submit(TICKETS[1]).run_id
    rewrite_history(runtime.engine, signed, 2, {"template": "password_reset", "confidence": 1.0}, Signer(), chain="sha256")
    env = cli_env(settings)
    assert invoke(env, "audit", "verify", signed).exit_code == 0  # consistent, but no longer signed
    result = invoke(env, "audit", "verify", signed, "--require-signed")
    assert result.exit_code == 1 and "is not HMAC-signed" in result.stdout
    strict = invoke({**env, "CASEPLAN__RECORD__REQUIRE_SIGNED": "true"}, "audit", "verify", "--all")
    assert strict.exit_code == 1 and f"run {signed}" in strict.stdout


def test_a_signed_run_relabelled_as_an_old_format_run_is_caught(signing_key, runner, runtime, settings):
    """Format 1 had plain chains and no sealed run row; a signed run passed off as one must not
    verify under its HMAC label, with or without the key."""
    signed = runner.submit(TICKETS[1]).run_id
    execute(runtime.engine, "UPDATE run SET record_version = 1 WHERE id = :r", r=signed)
    result = invoke(cli_env(settings), "audit", "verify", signed)
    assert result.exit_code == 1 and f"TAMPERED: run {signed}: is labelled record format 1" in result.stdout, result.stdout


def test_a_signed_run_needs_its_key_to_be_checked(signing_key, runner, settings, monkeypatch):
    signed = runner.submit(TICKETS[1]).run_id
    env = cli_env(settings)
    monkeypatch.delenv(SIGNING_KEY)
    missing = invoke(env, "audit", "verify", signed)
    assert missing.exit_code == 2 and f"set {SIGNING_KEY}" in missing.stderr
    without_key = report_run(AuditSource.open(settings), signed)  # what the service shows: a status, not a 500
    assert without_key.status == "unverifiable" and f"set {SIGNING_KEY}" in without_key.message
    monkeypatch.setenv(SIGNING_KEY, "another key")
    wrong = invoke(env, "audit", "verify", signed)
    assert wrong.exit_code == 2 and "is signed with key id" in wrong.stderr
    summary = invoke(env, "audit", "verify", "--all")
    assert summary.exit_code == 2 and "1 could not be checked" in summary.stdout


def test_a_run_moved_to_an_earlier_date_is_still_in_the_date_range_checked(recorded):
    runtime, env, reset, _ = recorded
    execute(runtime.engine, "UPDATE run SET created_at = :at WHERE id = :r", at="2020-01-01 00:00:00", r=reset)
    today = invoke(env, "audit", "verify", "--all", "--since", datetime.now(UTC).date().isoformat())
    assert today.exit_code == 1 and f"TAMPERED: run {reset}" in today.stdout and "checked 2 runs" in today.stdout


def test_a_seal_removed_with_the_last_events_is_caught(recorded, monkeypatch):
    """Status set back to running, root hash and the tool calls deleted: an edit of what is left
    breaks its chain, and what is left alone is reported stalled once the run is silent."""
    runtime, env, reset, _ = recorded
    execute(runtime.engine, "UPDATE run SET status = 'running', root_hash = NULL, reply = NULL WHERE id = :r", r=reset)
    execute(runtime.engine, "DELETE FROM runevent WHERE run_id = :r AND seq >= 12", r=reset)
    quiet = invoke(env, "audit", "verify", "--all")
    assert quiet.exit_code == 0 and "1 in progress" in quiet.stdout  # minutes old: it could still be running
    monkeypatch.setattr("agent.audit.STALLED_AFTER", timedelta(0))
    stalled = invoke(env, "audit", "verify", "--all")
    assert stalled.exit_code == 1 and f"STALLED:  run {reset} is not sealed" in stalled.stdout and "1 stalled" in stalled.stdout
    assert invoke(env, "audit", "verify", reset).exit_code == 1
    execute(runtime.engine, "UPDATE runevent SET payload = :p WHERE run_id = :r AND seq = 1", p=json.dumps({"text": "EDITED"}), r=reset)
    edited = invoke(env, "audit", "verify", "--all")
    assert edited.exit_code == 1 and f"TAMPERED: run {reset} event 1 (intake)" in edited.stdout


def test_unknown_and_unfinished_runs_get_exit_2(runtime, settings):
    env = cli_env(settings)
    unknown = invoke(env, "audit", "verify", "run_nope")
    assert unknown.exit_code == 2 and unknown.stderr.strip() == "error: unknown run id 'run_nope'"
    waiting = runtime.store.create_run(TICKETS[0].model_dump(mode="json"), runtime.versions).id
    result = invoke(env, "audit", "verify", waiting)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: run {waiting} is still in progress (status received); check it once it has finished"
    everything = invoke(env, "audit", "verify", "--all")
    assert everything.exit_code == 0 and "1 in progress" in everything.stdout


@pytest.mark.parametrize("status", ["running", "waiting_approval", "bogus"])
def test_a_sealed_run_passed_off_as_in_progress_is_tampering_not_a_skip(recorded, status):
    """Setting the status back hid an edit: verify --all and replay --all skipped the run, exit 0."""
    runtime, env, reset, _ = recorded
    execute(runtime.engine, "UPDATE run SET status = :s WHERE id = :r", s=status, r=reset)
    everything = invoke(env, "audit", "verify", "--all")
    assert everything.exit_code == 1 and "0 in progress" in everything.stdout, everything.stdout
    assert f"run {reset}: " in everything.stdout and "status" in everything.stdout
    replayed = invoke(env, "replay", "--all")
    assert replayed.exit_code == 1 and reset in replayed.stdout, replayed.stdout


COLUMN_EDITS = {
    "an event time that is not a time": "UPDATE runevent SET created_at = 'garbage' WHERE run_id = :r AND seq = 3",
    "an event number that is not a number": "UPDATE runevent SET seq = 'abc' WHERE run_id = :r AND seq = 3",
    "a record format that is not a number": "UPDATE run SET record_version = 'x' WHERE id = :r",
    "a run time that is not a time": "UPDATE run SET updated_at = '' WHERE id = :r",
}


@pytest.mark.parametrize("edit", COLUMN_EDITS, ids=list(COLUMN_EDITS))
def test_a_column_edited_to_another_type_is_reported_and_the_other_runs_still_checked(recorded, edit):
    runtime, env, reset, status = recorded
    if runtime.engine.dialect.name == "postgresql":  # typed columns refuse the edit: nothing to misread
        with pytest.raises(DBAPIError):
            execute(runtime.engine, COLUMN_EDITS[edit], r=reset)
        assert invoke(env, "audit", "verify", "--all").exit_code == 0
        return
    execute(runtime.engine, COLUMN_EDITS[edit], r=reset)
    everything = invoke(env, "audit", "verify", "--all")
    assert everything.exit_code == 1 and "Traceback" not in everything.output, everything.output
    assert f"run {reset}: its stored rows cannot be read as caseplan writes them" in everything.stdout
    assert "1 verified, 1 tampered" in everything.stdout  # the other run was still checked
    assert invoke(env, "audit", "verify", status).exit_code == 0
    assert invoke(env, "audit", "list").exit_code == 0
    assert invoke(env, "replay", reset).exit_code == 1


def test_export_verifies_offline_and_damage_to_the_file_is_found(recorded, tmp_path):
    runtime, env, reset, status = recorded
    exported = tmp_path / "runs.jsonl"
    result = invoke(env, "audit", "export", "--format", "jsonl", "--output", str(exported))
    assert result.exit_code == 0, result.output
    lines = exported.read_text().splitlines()
    assert len(lines) == 2 and {json.loads(line)["id"] for line in lines} == {reset, status}
    assert "jane@example.com" not in exported.read_text()  # auditors get the masked record
    assert invoke(env, "audit", "verify", "--file", str(exported)).exit_code == 0

    edited = [json.loads(line) for line in lines]
    target = next(run for run in edited if run["id"] == reset)
    target["events"][2]["payload"]["plan_hash"] = "0" * 64
    exported.write_text("\n".join(json.dumps(run) for run in edited) + "\n")
    result = invoke(env, "audit", "verify", "--file", str(exported))
    assert result.exit_code == 1 and f"run {reset} event 3 (plan)" in result.stdout

    exported.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2] + "\n")
    result = invoke(env, "audit", "verify", "--file", str(exported))
    assert result.exit_code == 1 and "line 2: not a caseplan run export" in result.stdout and "truncated" in result.stdout

    single = invoke(env, "audit", "export", reset)
    assert single.exit_code == 0 and json.loads(single.stdout)["format"] == "caseplan.run/1"
    assert invoke(env, "audit", "export", "--format", "csv").exit_code == 2
    assert invoke(env, "audit", "export", "run_nope").stderr.strip() == "error: unknown run id 'run_nope'"

