"""Database engines: SQLite by default (WAL, foreign keys), any SQLAlchemy URL for scale."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError, OperationalError
from sqlmodel import create_engine


class DatabaseUrlError(ValueError):
    """A database URL that names no usable database: unknown or uninstalled driver, not a URL,
    or a SQLite file whose folder cannot be made."""


def make_engine(url: str, *, read_only: bool = False) -> Engine:
    """Create an engine; for SQLite files, create the folder and tune for many small writes.
    `read_only` (the audit commands): a SQLite file is opened without writing anything, so a
    record copied to read-only media can still be read and verified."""
    is_sqlite = url.startswith("sqlite")
    if read_only and url.startswith("sqlite:///") and not url.endswith(":memory:"):
        return _read_only_sqlite(Path(url.removeprefix("sqlite:///")))
    try:
        if url.startswith("sqlite:///") and not url.endswith(":memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30} if is_sqlite else {},
            pool_pre_ping=not is_sqlite,
        )
    except (ArgumentError, NoSuchModuleError, ImportError, OSError) as exc:
        raise DatabaseUrlError(f"database URL {_shown(url)} cannot be used: {exc}; expected e.g. postgresql+psycopg://user@host/db or sqlite:///path") from None
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _read_only_sqlite(path: Path) -> Engine:
    """Reads `path` and never writes it: `mode=ro` first (other processes may still be writing);
    where even that cannot open it (a WAL database on a read-only file system needs a `-shm`
    file it cannot make), `immutable=1`, which is true of read-only media."""
    path = path.expanduser()
    if path.parent.exists() and not path.parent.is_dir():
        raise DatabaseUrlError(f"database URL {_shown(f'sqlite:///{path}')} cannot be used: {path.parent} is a file, not a folder")
    if not path.is_file():
        raise DatabaseUrlError(f"there is no record database at {path} yet: run a ticket or `caseplan db upgrade` first")
    target = quote(str(path.resolve()))

    def connect() -> sqlite3.Connection:
        try:
            connection = sqlite3.connect(f"file:{target}?mode=ro", uri=True, check_same_thread=False, timeout=30)
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # opening is lazy; this is where WAL fails
            return connection
        except sqlite3.OperationalError:
            return sqlite3.connect(f"file:{target}?immutable=1", uri=True, check_same_thread=False)

    return create_engine("sqlite://", creator=connect)


def _shown(url: str) -> str:
    """The URL without its password, for error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url[:80])


# The database cannot be used right now (unreachable, refusing connections, locked, read-only
# file): SQLAlchemy's wrapper, and sqlite3's own for what opens SQLite directly (checkpoints).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (OperationalError, sqlite3.OperationalError)
# ... or cannot be used at all: also a file that is not a database (for the CLI to say so in
# one line; not for retrying, since it stays so).
UNUSABLE_ERRORS: tuple[type[Exception], ...] = (DatabaseError, sqlite3.DatabaseError)


def unavailable_reason(exc: Exception) -> str:
    """The driver's first line for a database error (without SQLAlchemy's statement dump)."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return (lines[0] if lines else type(cause).__name__)[:300]


def insert_new(conn: Connection, table: Table, row: dict[str, Any]) -> bool:
    """Insert `row` unless a row with the same unique key exists; True when it was inserted.
    Inside a transaction this never raises on the duplicate, so the transaction stays usable
    (on PostgreSQL a failed INSERT would abort it)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).values(row).on_conflict_do_nothing().returning(*table.primary_key.columns)
    return conn.execute(statement).first() is not None  # rowcount is not reliable here on psycopg


WAL_ATTEMPTS = 20


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 (DB-API objects are untyped)
    cursor = dbapi_connection.cursor()
    for attempt in range(WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            # Switching a new file to WAL needs it to itself, and SQLite answers "locked" at once
            # (no busy wait) while another process's first connection holds it.
            if "locked" not in str(exc) or attempt + 1 == WAL_ATTEMPTS:
                raise
            time.sleep(0.05 * (attempt + 1))
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
