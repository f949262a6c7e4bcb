"""Rate-limit counters in the record database, so every worker and every restart sees them.

One row per counted use: (rule, idempotency key). A step that is retried or resumed has the same
key and is not counted twice. The scope (requester email, account id) is stored only as a
sha256, so the table holds no PII. A read-only limiter (replay) counts what was there before
the replayed run arrived and writes nothing, so replay reproduces the recorded decision.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Select, UniqueConstraint, func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from agent.db import insert_new
from agent.schema import ensure_schema


def _utcnow() -> datetime:
    return datetime.now(UTC)


class PolicyRateUse(SQLModel, table=True):
    """One use of a rate-limited tool, counted under one rule and scope."""

    __tablename__ = "policy_rate_use"
    __table_args__ = (UniqueConstraint("rule_id", "idempotency_key"),)
    id: int | None = Field(default=None, primary_key=True)
    rule_id: str = Field(index=True)
    scope_hash: str = Field(index=True)
    idempotency_key: str
    run_id: str = Field(index=True)
    created_at: datetime = Field(default_factory=_utcnow, index=True)


def scope_hash(rule_id: str, scope: str) -> str:
    return hashlib.sha256(f"{rule_id}\n{scope.strip().lower()}".encode()).hexdigest()


class RateUse(NamedTuple):
    """One use to count under a rule, if its window has room."""

    rule_id: str
    scope: str
    limit: int
    window_s: int


class _WindowFull(Exception):
    def __init__(self, rule_id: str) -> None:
        super().__init__(rule_id)
        self.rule_id = rule_id


class RateLimiter:
    """Counts uses in a sliding window; `take` counts one use unless the key was counted already."""

    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        self.engine = engine
        self.read_only = read_only
        if not read_only:
            ensure_schema(engine)
        self._table = PolicyRateUse.__table__

    def used(
        self,
        rule_id: str,
        scope: str,
        window_s: int,
        *,
        now: datetime | None = None,
        excluding: str | None = None,
        excluding_run: str | None = None,
        before: bool = False,
    ) -> int:
        """Uses in the window ending `now`, not counting the use made under `excluding` (a retried
        step) nor those of run `excluding_run` (a re-driven run); with `before`, only uses strictly
        before `now` (as they stood at that moment)."""
        end = now or _utcnow()
        query = self._in_window(rule_id, scope_hash(rule_id, scope), end, window_s, excluding)
        if excluding_run is not None:
            query = query.where(self._table.c.run_id != excluding_run)
        if before:
            query = query.where(self._table.c.created_at < end)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def counted(self, rule_id: str, idempotency_key: str) -> bool:
        table = self._table
        query = select(table.c.id).where(table.c.rule_id == rule_id, table.c.idempotency_key == idempotency_key)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def take(self, uses: Sequence[RateUse], idempotency_key: str, run_id: str, *, now: datetime | None = None) -> str | None:
        """Count one use under each rule, all or none. When a rule's window is full nothing is
        counted and that rule's id comes back. The check and the count share one transaction
        that holds each rule's lock (an advisory lock per rule and scope on PostgreSQL, the write
        lock SQLite takes at the first insert), so of two runs racing for the last use exactly one
        gets it. A key counted before (a retried or resumed step) is not counted again; a
        read-only limiter (replay) counts nothing."""
        if self.read_only or not uses:
            return None
        at = now or _utcnow()
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # in one order, so two steps never wait on each other
                    for digest in sorted({scope_hash(use.rule_id, use.scope) for use in uses}):
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": int(digest[:15], 16)})
                for use in uses:
                    self._take_one(conn, use, idempotency_key, run_id, at)
        except _WindowFull as full:
            return full.rule_id
        return None

    def _take_one(self, conn: Connection, use: RateUse, idempotency_key: str, run_id: str, at: datetime) -> None:
        table, digest = self._table, scope_hash(use.rule_id, use.scope)
        row = {"rule_id": use.rule_id, "scope_hash": digest, "idempotency_key": idempotency_key, "run_id": run_id, "created_at": at}
        if not insert_new(conn, table, row):
            return  # already counted under this key: a retry or a resumed run
        earlier = conn.execute(self._in_window(use.rule_id, digest, at, use.window_s, idempotency_key)).scalar_one()
        if earlier >= use.limit:
            raise _WindowFull(use.rule_id)

    def _in_window(self, rule_id: str, digest: str, end: datetime, window_s: int, excluding: str | None) -> Select:
        """Count of the uses under a rule and scope in the window ending `end`, less `excluding`'s."""
        table = self._table
        query = select(func.count()).select_from(table).where(
            table.c.rule_id == rule_id, table.c.scope_hash == digest, table.c.created_at >= end - timedelta(seconds=window_s)
        )
        return query if excluding is None else query.where(table.c.idempotency_key != excluding)
