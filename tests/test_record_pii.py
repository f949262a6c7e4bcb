"""PII in the record: stored masked everywhere an auditor reads, the originals sealed in the
vault (bound to their place, under a key outside the database) so replay and resume still see
what the customer wrote."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text
from sqlmodel import select

from agent.record import VaultEntry
from agent.runner import Runner
from agent.runtime import Runtime
from agent.vault import mask_record
from policies.pii import PII_KINDS, mask_text
from tests.conftest import make_settings
from tests.record_support import TICKETS, cli_env, execute, invoke
from tools.sandbox.models import SandboxResetRequest
from tools.sandbox.seed import seed_demo

SECRETS = ["jane@example.com", "4111 1111 1111 1111", "+44 20 7946 0958", "GB82WEST12345698765432", "li.wei@example.com"]
PII_TICKET = TICKETS[10]


def stored_text(engine) -> str:
    """Everything an auditor can read from the record tables, as text."""
    queries = [
        "SELECT CAST(ticket AS TEXT), CAST(route AS TEXT), reply, error FROM run",
        "SELECT CAST(payload AS TEXT) FROM runevent",
        "SELECT CAST(body AS TEXT) FROM storedplan",
    ]
    with engine.connect() as conn:
        return "\n".join(str(value) for query in queries for row in conn.execute(text(query)) for value in row)


def test_the_record_is_masked_and_the_vault_keeps_the_originals(runner, runtime, settings):
    results = [runner.submit(ticket) for ticket in (PII_TICKET, TICKETS[0], TICKETS[4])]
    stored = stored_text(runtime.engine)
    for secret in SECRETS:
        assert secret not in stored
    for kind in ("email", "card", "phone", "iban"):
        assert f"[{kind}:" in stored

    run_id = results[0].run_id
    assert runtime.store.get_run(run_id).ticket["text"].startswith("I forgot my password. Card [card:")
    assert runtime.store.original_ticket(run_id) == PII_TICKET.model_dump(mode="json")
    plan = runtime.store.load_plan(results[1].plan_hash)
    assert plan.hash == results[1].plan_hash and plan.slots["account_email"] == "jane@example.com"

    with runtime.engine.connect() as conn:
        refs = {row.ref for row in conn.execute(text("SELECT ref FROM piivault WHERE run_id = :r"), {"r": run_id})}
    assert f"run:{run_id}:ticket" in refs and f"event:{run_id}:1" in refs

    shown = invoke(cli_env(settings), "audit", "show", run_id)
    assert shown.exit_code == 0 and "[card:" in shown.stdout
    assert not any(secret in shown.stdout for secret in SECRETS)


def test_machine_ids_are_never_masked_but_pii_next_to_them_is():
    digest = next(
        h for h in (hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)) if mask_text(h) != h
    )  # a sha256 whose digits pass the card checksum
    data = {"plan_hash": digest, "id": f"ver_{digest[:16]}", "note": "card 4111 1111 1111 1111"}
    masked = mask_record(data, PII_KINDS)
    assert masked["plan_hash"] == digest and masked["id"] == data["id"]
    assert masked["note"].startswith("card [card:")


def test_a_vault_row_moved_to_another_event_does_not_open(runner, runtime, settings):
    run_id = runner.submit(TICKETS[0]).run_id
    with runtime.engine.connect() as conn:
        first = conn.execute(text("SELECT sealed FROM piivault WHERE ref = :r"), {"r": f"event:{run_id}:1"}).scalar_one()
    execute(runtime.engine, "UPDATE piivault SET sealed = :s WHERE ref = :r", s=first, r=f"event:{run_id}:7")
    result = invoke(cli_env(settings), "replay", run_id)
    assert result.exit_code == 1
    assert f"event:{run_id}:7: the sealed original does not open here" in result.stdout


def test_replay_without_the_vault_key_says_which_key_it_needs(runner, runtime, settings, monkeypatch):
    run_id = runner.submit(TICKETS[0]).run_id
    env = cli_env(settings)
    (settings.data_path / "vault.key").rename(settings.data_path / "elsewhere.key")
    missing = invoke(env, "replay", run_id)
    assert missing.exit_code == 2 and "set CASEPLAN_RECORD_VAULT_KEY (the vault key)" in missing.stderr
    monkeypatch.setenv("CASEPLAN_RECORD_VAULT_KEY", invoke(env, "audit", "keygen").stdout.strip())
    wrong = invoke(env, "replay", run_id)
    assert wrong.exit_code == 2 and "sealed with vault key id" in wrong.stderr
    monkeypatch.setenv("CASEPLAN_RECORD_VAULT_KEY", "not a key")
    bad = invoke(env, "replay", run_id)
    assert bad.exit_code == 2 and "the vault key must be 32 bytes in urlsafe base64" in bad.stderr
    assert invoke(env, "audit", "verify", run_id).exit_code == 0  # verification never needs the vault


@pytest.fixture
def forgetful(tmp_path, database_env, embedder, local_model):
    """A runtime told not to keep originals: the record is masked and that is all there is."""
    built = Runtime.build(
        make_settings(tmp_path / "data", CASEPLAN__RECORD__KEEP_ORIGINALS="false", **database_env),
        embedder=embedder,
        local_model=local_model,
    )
    seed_demo(built.sandbox)
    yield built
    built.engine.dispose()


def test_without_kept_originals_replay_and_resume_say_so(forgetful):
    run_id = Runner(forgetful).submit(TICKETS[0]).run_id
    with forgetful.engine.connect() as conn:
        assert {row.key_id for row in conn.execute(text("SELECT key_id FROM piivault"))} == {"dropped"}
    assert not (forgetful.settings.data_path / "vault.key").exists()
    result = invoke(cli_env(forgetful.settings, CASEPLAN__RECORD__KEEP_ORIGINALS="false"), "replay", run_id)
    assert result.exit_code == 2 and "the original was not kept (record.keep_originals was false)" in result.stderr


def test_resume_without_a_checkpoint_uses_the_original_ticket(runtime):
    """A crash before the first checkpoint: the run is re-driven from its ticket, which is
    stored masked; resume opens the vault instead of resetting the password of `[email:...]`."""
    run = runtime.store.create_run(TICKETS[0].model_dump(mode="json"), runtime.versions)
    assert "jane@example.com" not in str(runtime.store.get_run(run.id).ticket)
    result = Runner(runtime).resume(run.id)
    assert result.status == "completed" and result.plan["slots"]["account_email"] == "jane@example.com"
    with runtime.sandbox.session() as session:
        assert [r.user_id for r in session.exec(select(SandboxResetRequest)).all()] == ["u_1001"]


def test_vault_rows_are_not_in_the_auditor_export(runner, settings):
    run_id = runner.submit(PII_TICKET).run_id
    exported = invoke(cli_env(settings), "audit", "export", run_id).stdout
    assert "sealed" not in exported and VaultEntry.__tablename__ not in exported
    assert not any(secret in exported for secret in SECRETS)


def test_a_run_whose_originals_were_erased_verifies_but_is_not_replayed(runner, runtime, settings):
    """docs/audit.md: deleting a run's vault rows erases its PII; it still verifies and can no
    longer be replayed, which replay says in one line (it crashed on the masked ticket)."""
    run_id = runner.submit(TICKETS[0]).run_id
    execute(runtime.engine, "DELETE FROM piivault WHERE run_id = :r", r=run_id)
    env = cli_env(settings)
    assert invoke(env, "audit", "verify", run_id).exit_code == 0
    replayed = invoke(env, "replay", run_id)
    assert replayed.exit_code == 2 and "Traceback" not in replayed.output, replayed.output
    assert f"error: run {run_id} cannot be replayed: its recorded ticket or events are not what caseplan writes" in replayed.stderr
    everything = invoke(env, "replay", "--all")
    assert everything.exit_code == 2 and "Traceback" not in everything.output
