"""The run record: runs, their ordered hash-chained events, stored plans and the side-effect
ledger. Complete enough that an auditor can rebuild every decision without the live system."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, UniqueConstraint, bindparam, insert, update
from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, select

from plans.models import Plan, canonical_json

RUN_STATUSES = ("received", "running", "waiting_approval", "completed", "escalated", "failed")
EVENT_KINDS = (
    "intake",
    "route",
    "model_call",
    "plan",
    "policy_decision",
    "approval",
    "tool_call",
    "tool_result",
    "escalation",
    "reply",
    "error",
)
GENESIS_HASH = "0" * 64


def utcnow() -> datetime:
    return datetime.now(UTC)


class Run(SQLModel, table=True):
    id: str = Field(primary_key=True)
    status: str = Field(default="received", index=True)
    ticket: dict = Field(sa_column=Column(JSON, nullable=False))
    ticket_id: str | None = Field(default=None, index=True)
    template: str | None = Field(default=None, index=True)
    plan_hash: str | None = None
    route: dict | None = Field(default=None, sa_column=Column(JSON))
    reply: str | None = None
    escalation_reason: str | None = None
    error: str | None = None
    versions: dict = Field(default_factory=dict, sa_column=Column(JSON))
    root_hash: str | None = None
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)


class RunEvent(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("run_id", "seq"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    seq: int
    kind: str
    node: str
    payload: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    prev_hash: str
    hash: str


class StoredPlan(SQLModel, table=True):
    hash: str = Field(primary_key=True)
    template: str = Field(index=True)
    body: dict = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class SideEffect(SQLModel, table=True):
    """One side-effecting tool call per idempotency key: what was asked and what came back."""

    idempotency_key: str = Field(primary_key=True)
    run_id: str = Field(index=True)
    step_id: str
    tool: str
    status: str  # started | succeeded | failed
    output: dict | None = Field(default=None, sa_column=Column(JSON))
    error: dict | None = Field(default=None, sa_column=Column(JSON))
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


def event_hash(prev_hash: str, seq: int, kind: str, node: str, payload: dict[str, Any], created_at: datetime) -> str:
    body = canonical_json({"seq": seq, "kind": kind, "node": node, "payload": payload, "at": created_at.isoformat()})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


class UnknownRunError(KeyError):
    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.message = f"unknown run id {run_id!r}"

    def __str__(self) -> str:
        return self.message


class RunStore:
    """Writes and reads the record. Hot-path writes use SQLAlchemy Core on the same tables:
    one short transaction each, no ORM unit of work."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine)
        runs, events = Run.__table__, RunEvent.__table__
        self._runs, self._events = runs, events
        # Built once: constructing statements per call costs more than SQLite's own work.
        self._insert_run = insert(runs)
        self._insert_event = insert(events)
        self._chain_head = (
            select(events.c.seq, events.c.hash)
            .where(events.c.run_id == bindparam("run_id"))
            .order_by(events.c.seq.desc())
            .limit(1)
        )

    def create_run(self, ticket: dict[str, Any], versions: dict[str, str], run_id: str | None = None) -> Run:
        now = utcnow()
        run = Run(
            id=run_id or f"run_{uuid.uuid4().hex[:20]}",
            ticket=ticket,
            ticket_id=ticket.get("ticket_id"),
            versions=versions,
            created_at=now,
            updated_at=now,
        )
        with self.engine.begin() as conn:
            conn.execute(self._insert_run, run.model_dump())
        return run

    def get_run(self, run_id: str) -> Run:
        with Session(self.engine, expire_on_commit=False) as session:
            run = session.get(Run, run_id)
        if run is None:
            raise UnknownRunError(run_id)
        return run

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(self._runs).where(self._runs.c.id == run_id).values(**fields, updated_at=utcnow())
            ).rowcount
        if not changed:
            raise UnknownRunError(run_id)

    def append_event(self, run_id: str, kind: str, node: str, payload: dict[str, Any]) -> RunEvent:
        """Append one event, chained to the previous event's hash, in one transaction."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        payload = _plain(payload)
        with self.engine.begin() as conn:
            last = conn.execute(self._chain_head, {"run_id": run_id}).first()
            seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS_HASH)
            created = utcnow()
            event = RunEvent(
                run_id=run_id,
                seq=seq,
                kind=kind,
                node=node,
                payload=payload,
                created_at=created,
                prev_hash=prev,
                hash=event_hash(prev, seq, kind, node, payload, created),
            )
            conn.execute(self._insert_event, event.model_dump(exclude={"id"}))
        return event

    def last_event_hash(self, run_id: str) -> str | None:
        with self.engine.connect() as conn:
            head = conn.execute(self._chain_head, {"run_id": run_id}).first()
        return head.hash if head else None

    def events(self, run_id: str) -> Sequence[RunEvent]:
        with Session(self.engine) as session:
            return session.exec(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)).all()

    def store_plan(self, plan: Plan) -> str:
        digest = plan.hash
        table = StoredPlan.__table__
        with self.engine.begin() as conn:
            if conn.execute(select(table.c.hash).where(table.c.hash == digest)).first() is None:
                conn.execute(
                    insert(table).values(hash=digest, template=plan.template, body=plan.model_dump(mode="json"), created_at=utcnow())
                )
        return digest

    def load_plan(self, digest: str) -> Plan:
        with Session(self.engine) as session:
            stored = session.get(StoredPlan, digest)
        if stored is None:
            raise KeyError(digest)
        return Plan.model_validate(stored.body)

    def list_runs(self, limit: int = 50) -> Sequence[Run]:
        with Session(self.engine) as session:
            return session.exec(select(Run).order_by(Run.created_at.desc()).limit(limit)).all()


def _plain(payload: dict[str, Any]) -> dict[str, Any]:
    """JSON round trip, so what is hashed is exactly what the database stores."""
    return json.loads(canonical_json(payload))


class SideEffectLedger:
    """Local deduplication of side effects by idempotency key."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        SQLModel.metadata.create_all(engine)
        self._table = SideEffect.__table__

    def get(self, key: str) -> SideEffect | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(self._table).where(self._table.c.idempotency_key == key)).mappings().first()
        return SideEffect.model_validate(dict(row)) if row else None

    def begin(self, key: str, run_id: str, step_id: str, tool: str) -> None:
        """Note the attempt before the call, so a crash mid-call is visible in the record."""
        table = self._table
        with self.engine.begin() as conn:
            bumped = conn.execute(
                update(table)
                .where(table.c.idempotency_key == key)
                .values(attempts=table.c.attempts + 1, updated_at=utcnow())
            ).rowcount
            if not bumped:
                now = utcnow()
                conn.execute(
                    insert(table).values(
                        idempotency_key=key, run_id=run_id, step_id=step_id, tool=tool, status="started",
                        attempts=1, created_at=now, updated_at=now,
                    )
                )

    def finish(self, key: str, *, output: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> None:
        table = self._table
        with self.engine.begin() as conn:
            changed = conn.execute(
                update(table)
                .where(table.c.idempotency_key == key)
                .values(status="succeeded" if error is None else "failed", output=output, error=error, updated_at=utcnow())
            ).rowcount
        if not changed:
            raise KeyError(key)
