"""The run record: runs, their ordered hash-chained events, stored plans, approvals, the
side-effect ledger and the PII vault. Complete enough that an auditor can rebuild every
decision without the live system (docs/audit.md).

What is stored is masked (`agent.vault`) and chained (`agent.integrity`): each event's hash
covers the one before it, and a finished run is sealed with a root hash over its last event
and its outcome.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import JSON, Column, Text, UniqueConstraint, bindparam, insert, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from agent.db import insert_new
from agent.integrity import (
    GENESIS_HASH,
    PLAIN_CHAIN,
    RECORD_VERSION,
    Keyring,
    RecordError,
    Signer,
    event_digest,
    legacy_event_hash,
    root_digest,
    run_outcome,
)
from agent.schema import ensure_schema
from agent.settings import Settings
from agent.vault import DROPPED, Vault, load_vault, mask_record, reveal
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


class NewEvent(NamedTuple):
    """An event to append: what happened, at which graph node, with what data (plain JSON)."""

    kind: str
    node: str
    payload: dict[str, Any]


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
    # The database default marks rows written before format 2 existed as format 1.
    record_version: int = Field(default=RECORD_VERSION, sa_column_kwargs={"server_default": "1"})
    chain: str = Field(default=PLAIN_CHAIN, sa_column_kwargs={"server_default": PLAIN_CHAIN})


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
    versions: dict | None = Field(default=None, sa_column=Column(JSON))


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


class Approval(SQLModel, table=True):
    """A person's decision a run waits for: the steps policy marked needs_approval, then the answer."""

    id: str = Field(primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    plan_hash: str
    steps: list = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", index=True)  # pending | approved | rejected
    requested_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    decided_by: str | None = None
    note: str | None = None


class VaultEntry(SQLModel, table=True):
    """The sealed original of one masked thing: `run:<id>:ticket`, `event:<run>:<seq>`, `plan:<hash>`."""

    __tablename__ = "piivault"
    ref: str = Field(primary_key=True)
    run_id: str | None = Field(default=None, index=True)
    key_id: str
    sealed: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


_UNLOADED = object()


@dataclass
class RecordProtection:
    """What the store does to what it writes: mask PII (sealing the originals) and sign the chain.

    The vault key is loaded when first needed, so commands that never open or seal an original
    work without it, and a writer creates the local key file only when it first seals one."""

    keyring: Keyring = field(default_factory=Keyring)
    mask_kinds: tuple[str, ...] = ()
    keep_originals: bool = False
    vault_key_env: str = "the vault key variable"
    vault_key_file: Path | None = None
    writer: bool = False
    require_signed: bool = False
    _vault: Any = field(default=_UNLOADED, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, *, writer: bool) -> RecordProtection:
        """Keys come from the environment variables the settings name (the vault key may also
        come from the key file)."""
        record = settings.record
        signing_key = os.environ.get(record.signing_key_env, "").strip()
        return cls(
            keyring=Keyring(signing_key.encode() if signing_key else None, record.signing_key_env),
            mask_kinds=tuple(record.pii_kinds) if record.mask_pii else (),
            keep_originals=record.mask_pii and record.keep_originals,
            vault_key_env=record.vault_key_env,
            vault_key_file=settings.vault_key_path,
            writer=writer,
            require_signed=record.require_signed,
        )

    @property
    def vault(self) -> Vault | None:
        if self._vault is _UNLOADED:
            create = self.writer and self.keep_originals
            self._vault = load_vault(self.vault_key_env, self.vault_key_file, create=create) if self.vault_key_file else None
        return self._vault

    def mask(self, data: Any) -> Any:
        return mask_record(data, self.mask_kinds) if self.mask_kinds else data

    def protect(self, ref: str, run_id: str | None, plain: Any) -> tuple[Any, dict[str, Any] | None]:
        """The masked form to store, and the vault row for the original when masking changed it."""
        masked = self.mask(plain)
        if masked == plain:
            return plain, None
        row = {"ref": ref, "run_id": run_id, "created_at": utcnow()}
        if self.keep_originals and self.vault is not None:
            return masked, row | {"key_id": self.vault.key_id, "sealed": self.vault.seal(ref, plain, masked)}
        return masked, row | {"key_id": DROPPED, "sealed": ""}

    def reveal(self, entry: VaultEntry | None, masked: Any) -> Any:
        """The original behind `masked` (itself, when nothing was sealed)."""
        if entry is None:
            return masked
        return reveal(self.vault, self.vault_key_env, entry.ref, entry.key_id, entry.sealed, masked)


class UnknownRunError(KeyError):
    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.message = f"unknown run id {run_id!r}"

    def __str__(self) -> str:
        return self.message


class RunStore:
    """Writes and reads the record. Hot-path writes use SQLAlchemy Core on the same tables:
    one short transaction per graph node, no ORM unit of work. Payloads, tickets and plans are
    masked before they are stored; each event is chained with the signer its run was created
    under, onto the chain head this process last wrote (read back only when unknown or stale)."""

    def __init__(self, engine: Engine, protection: RecordProtection | None = None, *, migrate: bool = True) -> None:
        self.engine = engine
        self.protection = protection or RecordProtection()
        self.versions: dict[str, str] | None = None  # the runtime's versions, stored with each event
        ensure_schema(engine, upgrade=migrate)
        runs, events = Run.__table__, RunEvent.__table__
        self._runs, self._events, self._vault = runs, events, VaultEntry.__table__
        # Built once: constructing statements per call costs more than SQLite's own work.
        self._insert_run = insert(runs)
        self._insert_event = insert(events)
        self._insert_sealed = insert(self._vault)
        self._chain_head = (
            select(events.c.seq, events.c.hash)
            .where(events.c.run_id == bindparam("run_id"))
            .order_by(events.c.seq.desc())
            .limit(1)
        )
        self._run_chain = select(runs.c.record_version, runs.c.chain).where(runs.c.id == bindparam("run_id"))
        self._chains = lru_cache(maxsize=1024)(self._load_chain)
        self._heads: dict[str, tuple[int, str]] = {}  # run id -> (seq, hash) of the last event written here
        self._stored_plans: dict[str, bool] = {}  # plan hashes known to be stored (plans never change)

    def create_run(self, ticket: dict[str, Any], versions: dict[str, str], run_id: str | None = None) -> Run:
        now = utcnow()
        run_id = run_id or f"run_{uuid.uuid4().hex[:20]}"
        masked, sealed = self.protection.protect(f"run:{run_id}:ticket", run_id, _plain(ticket))
        run = Run(
            id=run_id,
            ticket=masked,
            ticket_id=ticket.get("ticket_id"),
            versions=versions,
            created_at=now,
            updated_at=now,
            record_version=RECORD_VERSION,
            chain=self.protection.keyring.writer.chain,
        )
        with self.engine.begin() as conn:
            conn.execute(self._insert_run, run.model_dump())
            if sealed:
                conn.execute(self._insert_sealed, sealed)
        return run

    def get_run(self, run_id: str) -> Run:
        with Session(self.engine, expire_on_commit=False) as session:
            run = session.get(Run, run_id)
        if run is None:
            raise UnknownRunError(run_id)
        return run

    def original_ticket(self, run_id: str) -> dict[str, Any]:
        """The ticket as the customer wrote it (the stored one is masked): what resume re-drives."""
        run = self.get_run(run_id)
        return self.protection.reveal(self._sealed(f"run:{run_id}:ticket"), run.ticket)

    def update_run(self, run_id: str, **fields: Any) -> None:
        with self.engine.begin() as conn:
            self._update_run(conn, run_id, fields)

    def _update_run(self, conn: Connection, run_id: str, fields: dict[str, Any]) -> None:
        changed = conn.execute(update(self._runs).where(self._runs.c.id == run_id).values(**fields, updated_at=utcnow())).rowcount
        if not changed:
            raise UnknownRunError(run_id)

    def finish_run(self, run_id: str, **outcome: Any) -> str:
        """Store the run's outcome and seal it: the root hash covers the last event and the outcome."""
        fields = {key: self.protection.mask(_plain(value)) for key, value in outcome.items()}
        with self.engine.begin() as conn:
            row = conn.execute(select(self._runs).where(self._runs.c.id == run_id)).mappings().first()
            if row is None:
                raise UnknownRunError(run_id)
            last_seq, last_hash = self._heads.pop(run_id, None) or self._read_head(conn, run_id)
            if row["record_version"] == 1:
                root = last_hash
            else:
                sealed = run_outcome(run_id, {**dict(row), **fields}, last_seq, row["record_version"], row["chain"])
                root = root_digest(self.protection.keyring.signer_for(run_id, row["chain"]), last_hash, sealed)
            conn.execute(update(self._runs).where(self._runs.c.id == run_id).values(**fields, root_hash=root, updated_at=utcnow()))
        return root

    def append_event(self, run_id: str, kind: str, node: str, payload: dict[str, Any]) -> RunEvent:
        """Append one event, masked and chained to the previous event's hash, in one transaction."""
        return self.append_events(run_id, [NewEvent(kind, node, payload)])[-1]

    def append_events(self, run_id: str, events: Sequence[NewEvent], **run_fields: Any) -> list[RunEvent]:
        """Append events in order, each masked and chained to the one before, in one transaction
        together with any change to the run row (`run_fields`): a graph node's whole record
        lands at once or not at all."""
        for new in events:
            if new.kind not in EVENT_KINDS:
                raise ValueError(f"unknown event kind {new.kind!r}")
        plain = [_plain(new.payload) for new in events]
        try:
            return self._write_events(run_id, events, plain, run_fields, self._heads.get(run_id))
        except IntegrityError:
            # Another writer extended this run's chain (a re-leased run): chain onto its head.
            self._heads.pop(run_id, None)
            return self._write_events(run_id, events, plain, run_fields, None)

    def _write_events(
        self, run_id: str, events: Sequence[NewEvent], plain: list[Any], run_fields: dict[str, Any], head: tuple[int, str] | None
    ) -> list[RunEvent]:
        record_version, signer = self._chains(run_id)
        with self.engine.begin() as conn:
            if run_fields:
                self._update_run(conn, run_id, run_fields)
            seq, prev = head or self._read_head(conn, run_id)
            rows, sealed_rows = [], []
            for new, payload in zip(events, plain, strict=True):
                seq += 1
                masked, sealed = self.protection.protect(f"event:{run_id}:{seq}", run_id, payload)
                created = utcnow()
                if record_version == 1:
                    digest, versions = legacy_event_hash(prev, seq, new.kind, new.node, masked, created), None
                else:
                    versions = self.versions
                    digest = event_digest(signer, prev, run_id, seq, new.kind, new.node, masked, versions, created)
                rows.append(
                    {
                        "run_id": run_id,
                        "seq": seq,
                        "kind": new.kind,
                        "node": new.node,
                        "payload": masked,
                        "created_at": created,
                        "prev_hash": prev,
                        "hash": digest,
                        "versions": versions,
                    }
                )
                sealed_rows += [sealed] if sealed else []
                prev = digest
            if rows:
                conn.execute(self._insert_event, rows)
            if sealed_rows:
                conn.execute(self._insert_sealed, sealed_rows)
        _remember(self._heads, run_id, (seq, prev))  # so the next append need not read it back
        # validated parts only: constructing a table model costs more than the insert
        return [RunEvent.model_construct(**row) for row in rows]

    def _read_head(self, conn: Connection, run_id: str) -> tuple[int, str]:
        """(seq, hash) of the run's last stored event; (0, genesis) before the first."""
        last = conn.execute(self._chain_head, {"run_id": run_id}).first()
        return (last.seq, last.hash) if last else (0, GENESIS_HASH)

    def _load_chain(self, run_id: str) -> tuple[int, Signer]:
        """A run's record format and signer never change, so they are read once per run."""
        with self.engine.connect() as conn:
            row = conn.execute(self._run_chain, {"run_id": run_id}).first()
        if row is None:
            raise UnknownRunError(run_id)
        return row.record_version, self.protection.keyring.signer_for(run_id, row.chain)

    def _sealed(self, ref: str) -> VaultEntry | None:
        with Session(self.engine) as session:
            return session.get(VaultEntry, ref)

    def events(self, run_id: str) -> Sequence[RunEvent]:
        """The run's events as stored (masked), in order."""
        with Session(self.engine) as session:
            return session.exec(select(RunEvent).where(RunEvent.run_id == run_id).order_by(RunEvent.seq)).all()

    def store_plan(self, plan: Plan) -> str:
        digest = plan.hash
        if digest in self._stored_plans:
            return digest
        table = StoredPlan.__table__
        with self.engine.begin() as conn:
            if conn.execute(select(table.c.hash).where(table.c.hash == digest)).first() is None:
                body, sealed = self.protection.protect(f"plan:{digest}", None, plan.model_dump(mode="json"))
                conn.execute(insert(table).values(hash=digest, template=plan.template, body=body, created_at=utcnow()))
                if sealed:
                    conn.execute(self._insert_sealed, sealed)
        _remember(self._stored_plans, digest, True)
        return digest

    def load_plan(self, digest: str) -> Plan:
        """The plan as compiled (unmasked through the vault); its hash is checked on the way out."""
        with Session(self.engine) as session:
            stored = session.get(StoredPlan, digest)
        if stored is None:
            raise KeyError(digest)
        plan = Plan.model_validate(self.protection.reveal(self._sealed(f"plan:{digest}"), stored.body))
        if plan.hash != digest:
            raise RecordError(f"stored plan {digest[:12]}: its body does not hash to its id (altered)")
        return plan

    def list_runs(self, limit: int = 50) -> Sequence[Run]:
        with Session(self.engine) as session:
            return session.exec(select(Run).order_by(Run.created_at.desc()).limit(limit)).all()

    def request_approval(self, run_id: str, plan_hash: str, steps: list[dict[str, Any]]) -> Approval:
        """The approval for this run's plan; created once, however often it is asked for."""
        approval_id = _approval_id(run_id, plan_hash)
        with Session(self.engine, expire_on_commit=False) as session:
            existing = session.get(Approval, approval_id)
            if existing is not None:
                return existing
            approval = Approval(id=approval_id, run_id=run_id, plan_hash=plan_hash, steps=_plain(steps))
            session.add(approval)
            session.commit()
            return approval

    def decided_approval(self, run_id: str, plan_hash: str) -> Approval | None:
        """The person's answer on this run's plan, once there is one: a run re-driven after the
        answer (a lost checkpoint, a crash before it was queued) uses it instead of asking again."""
        with Session(self.engine, expire_on_commit=False) as session:
            found = session.get(Approval, _approval_id(run_id, plan_hash))
        return found if found is not None and found.status != "pending" else None

    def decide_approval(self, run_id: str, approved: bool, by: str, note: str = "", conn: Connection | None = None) -> Approval | None:
        """Record a person's answer on the run's pending approval (None: nothing was pending).
        The update only applies while the row is still pending, so of two people answering at
        once exactly one wins and the other gets None, never a silently overwritten answer.
        With `conn`, inside the caller's transaction (the service queues the run in the same one)."""
        if conn is None:
            with self.engine.begin() as own:
                return self.decide_approval(run_id, approved, by, note, own)
        table = Approval.__table__
        pending = conn.execute(select(table).where(table.c.run_id == run_id, table.c.status == "pending")).mappings().first()
        if pending is None:
            return None
        # The note is typed by a person: masked like everything else the record keeps.
        answer = {"status": "approved" if approved else "rejected", "decided_at": utcnow(), "decided_by": by, "note": self.protection.mask(note)}
        if not conn.execute(update(table).where(table.c.id == pending["id"], table.c.status == "pending").values(**answer)).rowcount:
            return None
        return Approval.model_validate({**pending, **answer})

    def approvals(self, status: str | None = None, run_id: str | None = None) -> Sequence[Approval]:
        with Session(self.engine) as session:
            query = select(Approval).order_by(Approval.requested_at)
            if status:
                query = query.where(Approval.status == status)
            if run_id:
                query = query.where(Approval.run_id == run_id)
            return session.exec(query).all()


def _approval_id(run_id: str, plan_hash: str) -> str:
    return f"apr_{hashlib.sha256(f'{run_id}:{plan_hash}'.encode()).hexdigest()[:16]}"


def _remember(memo: dict[Any, Any], key: Any, value: Any, limit: int = 4096) -> None:
    """Put into a per-process memo that starts over when full (it only saves reads)."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value


def _plain(payload: Any) -> Any:
    """JSON round trip, so what is hashed is exactly what the database stores."""
    return json.loads(canonical_json(payload))


class SideEffectLedger:
    """Local deduplication of side effects by idempotency key."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ensure_schema(engine)
        self._table = SideEffect.__table__

    def get(self, key: str) -> SideEffect | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(self._table).where(self._table.c.idempotency_key == key)).mappings().first()
        return SideEffect.model_validate(dict(row)) if row else None

    def begin(self, key: str, run_id: str, step_id: str, tool: str) -> None:
        """Note the attempt before the call, so a crash mid-call is visible in the record."""
        table, now = self._table, utcnow()
        first = {"idempotency_key": key, "run_id": run_id, "step_id": step_id, "tool": tool, "status": "started", "attempts": 1, "created_at": now, "updated_at": now}
        with self.engine.begin() as conn:
            if not insert_new(conn, table, first):  # an attempt before this one (or one at the same moment)
                conn.execute(update(table).where(table.c.idempotency_key == key).values(attempts=table.c.attempts + 1, updated_at=now))

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

