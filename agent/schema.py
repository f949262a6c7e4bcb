"""The record database's schema version: Alembic migrations, run in-process.

Writers call `ensure_schema` on start: a new database gets today's tables and is stamped with
the newest revision; an older one is upgraded in place (a database made by caseplan 0.1,
before migrations existed, is recognised and stamped first). Readers (audit commands) call
`check_schema`, which never writes and says what to do when the versions disagree.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from agent.integrity import RecordError

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
BASELINE = "0001"
MANAGED_TABLES = frozenset(
    {
        "run",
        "runevent",
        "storedplan",
        "sideeffect",
        "escalation",
        "approval",
        "piivault",
        "identity_verification",
        "policy_rate_use",
        "api_key",
        "work_item",
        "idempotency_record",
        "eval_outcome",
        "desk_event",
        "console_session",
    }
)


class SchemaVersionError(RecordError):
    """The database's schema revision is not the one this caseplan reads."""


def record_metadata() -> MetaData:
    """All SQLModel tables, with the record's own tables registered."""
    import agent.evals.outcomes  # noqa: F401
    import agent.record  # noqa: F401 (registers the record tables)
    import agent.service.models  # noqa: F401
    import policies.ratelimit  # noqa: F401
    import tools.escalation  # noqa: F401
    import tools.verifications  # noqa: F401

    return SQLModel.metadata


def alembic_config(conn: Connection) -> Config:
    """Alembic's configuration for one open connection (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS))


def head_revision() -> str:
    return _scripts().get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _describe(conn: Connection, found: str | None, head: str) -> str:
    known = {script.revision for script in _scripts().walk_revisions()}
    if found is None:
        if inspect(conn).has_table("run"):
            return "the record database predates schema versioning (caseplan 0.1): run `caseplan db upgrade`"
        return "the record database has no caseplan tables yet: run a ticket or `caseplan db upgrade` first"
    if found not in known:
        return f"the record database is at schema revision {found}, newer than this caseplan knows ({head}): upgrade caseplan"
    return f"the record database is at schema revision {found}, older than this caseplan reads ({head}): run `caseplan db upgrade`"


def check_schema(engine: Engine) -> str:
    """The revision, if it is the one this code reads; otherwise a SchemaVersionError that says why."""
    head = head_revision()
    with engine.connect() as conn:
        found = current_revision(conn)
        if found != head:
            raise SchemaVersionError(_describe(conn, found, head))
    return head


def ensure_schema(engine: Engine, upgrade: bool = True) -> str:
    """Bring the database to the newest revision (or, with upgrade=False, insist it is there)."""
    try:
        return _ensure(engine, upgrade)
    except OperationalError as exc:
        # Two SQLite writers starting on a new file race to create it; the loser finds it done.
        if "already exists" not in str(exc):
            raise
        return _ensure(engine, upgrade)


def _ensure(engine: Engine, upgrade: bool) -> str:
    head = head_revision()
    metadata = record_metadata()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(73172006)"))  # one migrator at a time
        found = current_revision(conn)
        if found != head:
            if found is None and not inspect(conn).has_table("run"):
                metadata.create_all(conn)  # Alembic's recipe for a new database: build, then stamp
                command.stamp(alembic_config(conn), head)
                log.info("record schema created", revision=head)
            elif not upgrade:
                raise SchemaVersionError(_describe(conn, found, head))
            else:
                if found is None:
                    columns = {column["name"] for column in inspect(conn).get_columns("run")}
                    command.stamp(alembic_config(conn), head if "record_version" in columns else BASELINE)
                elif found not in {script.revision for script in _scripts().walk_revisions()}:
                    raise SchemaVersionError(_describe(conn, found, head))
                command.upgrade(alembic_config(conn), "head")
                log.info("record schema upgraded", revision=head, was=found)
        metadata.create_all(conn)  # tables outside the migrations (other modules) that are missing
    return head
