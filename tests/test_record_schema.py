"""Schema evolution: Alembic migrations build what the models describe, a database from before
migrations is upgraded in place (its runs still verify, by the rules they were written under),
and a database or run from another version gets a clear message and exit code 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from agent.db import make_engine
from agent.integrity import GENESIS_HASH, legacy_event_hash
from agent.record import RunStore
from agent.schema import MANAGED_TABLES, SchemaVersionError, alembic_config, check_schema, head_revision, record_metadata
from tests.record_support import cli_env, execute, invoke


@pytest.fixture
def engine(settings):
    built = make_engine(settings.database_url)
    yield built
    built.dispose()


def migrate(engine, revision):
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def schema_drift(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_name": lambda name, kind, _: kind != "table" or name in MANAGED_TABLES}
        )
        return compare_metadata(context, record_metadata())


def test_migrations_build_exactly_what_the_models_describe(engine):
    migrate(engine, "head")
    assert schema_drift(engine) == []
    assert check_schema(engine) == head_revision()


def test_downgrade_and_upgrade_again_keep_the_data(engine):
    migrate(engine, "head")
    store = RunStore(engine)
    run = store.create_run({"text": "hello"}, {"code": "test"})
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0001")
    migrate(engine, "head")
    with engine.connect() as conn:
        row = conn.execute(text("SELECT id, record_version, chain FROM run")).one()
    assert tuple(row) == (run.id, 1, "sha256")  # a row from before format 2 reads as format 1
    assert schema_drift(engine) == []


def write_legacy_run(engine) -> str:
    """A finished run exactly as caseplan 0.1 stored it: sha256 chain, root = last event hash."""
    run_id = "run_legacy0000000000001"
    now = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
    payloads = [("intake", "intake", {"ticket": {"text": "Any update on ticket #1002?"}}), ("reply", "reply", {"text": "Pending."})]
    execute(
        engine,
        "INSERT INTO run (id, status, ticket, template, versions, root_hash, created_at, updated_at) "
        "VALUES (:id, 'completed', :ticket, 'ticket_status', '{}', NULL, :at, :at)",
        id=run_id,
        ticket=json.dumps({"text": "Any update on ticket #1002?"}),
        at=now,
    )
    previous = GENESIS_HASH
    for seq, (kind, node, payload) in enumerate(payloads, start=1):
        digest = legacy_event_hash(previous, seq, kind, node, payload, now)
        execute(
            engine,
            "INSERT INTO runevent (run_id, seq, kind, node, payload, created_at, prev_hash, hash) "
            "VALUES (:r, :s, :k, :n, :p, :at, :prev, :h)",
            r=run_id, s=seq, k=kind, n=node, p=json.dumps(payload), at=now, prev=previous, h=digest,
        )
        previous = digest
    execute(engine, "UPDATE run SET root_hash = :h WHERE id = :r", h=previous, r=run_id)
    return run_id


def test_a_database_from_before_migrations_is_upgraded_and_its_runs_still_verify(engine, settings):
    migrate(engine, "0001")
    execute(engine, "DROP TABLE alembic_version")  # caseplan 0.1 made its tables without Alembic
    legacy = write_legacy_run(engine)
    env = cli_env(settings)

    before = invoke(env, "audit", "verify", legacy)
    assert before.exit_code == 2
    assert before.stderr.strip() == "error: the record database predates schema versioning (caseplan 0.1): run `caseplan db upgrade`"

    upgraded = invoke(env, "db", "upgrade")
    assert upgraded.exit_code == 0 and upgraded.stdout.strip() == f"schema unversioned -> {head_revision()}"
    assert invoke(env, "db", "current").stdout.split() [:2] == ["database:", head_revision()]

    verified = invoke(env, "audit", "verify", legacy)
    assert verified.exit_code == 0 and f"verified: run {legacy}: 2 events verified" in verified.stdout
    replay = invoke(env, "replay", legacy)
    assert replay.exit_code == 2 and "recorded in record format 1" in replay.stderr and "audit verify` still checks it" in replay.stderr

    execute(engine, "UPDATE runevent SET payload = :p WHERE run_id = :r AND seq = 2", p=json.dumps({"text": "Solved."}), r=legacy)
    tampered = invoke(env, "audit", "verify", legacy)
    assert tampered.exit_code == 1 and f"run {legacy} event 2 (reply): hash does not match" in tampered.stdout


def test_a_database_at_another_revision_gets_a_clear_message(engine, settings):
    env = cli_env(settings)
    empty = invoke(env, "audit", "list")
    assert empty.exit_code == 2 and "yet: run a ticket or `caseplan db upgrade` first" in empty.stderr  # no file, or no tables

    migrate(engine, "0001")
    older = invoke(env, "audit", "list")
    assert older.exit_code == 2
    assert older.stderr.strip() == (
        f"error: the record database is at schema revision 0001, older than this caseplan reads ({head_revision()}): "
        "run `caseplan db upgrade`"
    )
    with pytest.raises(SchemaVersionError, match="older than this caseplan reads"):
        RunStore(engine, migrate=False)  # record.auto_migrate: false

    execute(engine, "UPDATE alembic_version SET version_num = 'f00d'")
    newer = invoke(env, "audit", "verify", "--all")
    assert newer.exit_code == 2 and "schema revision f00d, newer than this caseplan knows" in newer.stderr
    with pytest.raises(SchemaVersionError, match="newer than this caseplan knows"):
        RunStore(engine)


def test_a_run_in_a_newer_record_format_is_refused_clearly(engine, settings):
    store = RunStore(engine)
    run = store.create_run({"text": "hello"}, {})
    store.append_event(run.id, "intake", "intake", {"ticket": {"text": "hello"}})
    store.finish_run(run.id, status="failed", error="test")
    env = cli_env(settings)
    assert invoke(env, "audit", "verify", run.id).exit_code == 0
    execute(engine, "UPDATE run SET record_version = 4 WHERE id = :r", r=run.id)
    result = invoke(env, "audit", "verify", run.id)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: run {run.id} uses record format 4; this caseplan reads formats 1-3: upgrade caseplan to check it"
