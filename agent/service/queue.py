"""The durable work queue: runs wait in the database until a worker leases one.

A lease lasts `lease_s` and the worker renews it by heartbeat while it drives the run. A
worker that dies stops renewing; when the lease runs out any worker may take the run and
resume it from its checkpoint (the side-effect ledger keeps done side effects from repeating).
On PostgreSQL the claim skips rows other workers hold (`FOR UPDATE SKIP LOCKED`); on SQLite
the claim is one UPDATE statement, which SQLite serialises.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Connection, Engine

from agent.db import insert_new
from agent.service.models import WorkItem, utcnow


class WorkQueue:
    def __init__(self, engine: Engine, lease_s: float) -> None:
        self.engine = engine
        self.lease = timedelta(seconds=lease_s)
        self._table = WorkItem.__table__

    def enqueue(self, run_id: str, answer: dict[str, Any] | None = None, conn: Connection | None = None) -> None:
        """Queue a run (again): new runs, and runs an approval answer lets continue. An answer
        for a run some worker still holds waits in the row; that worker queues it when done, so
        two workers never drive one run. With `conn`, inside the caller's transaction."""
        if conn is None:
            with self.engine.begin() as own:
                self.enqueue(run_id, answer, own)
            return
        t, now = self._table, utcnow()
        if answer is not None:
            held = conn.execute(update(t).where(t.c.run_id == run_id, t.c.state == "leased").values(answer=answer, updated_at=now)).rowcount
            if held:
                return
        requeued = conn.execute(
            update(t).where(t.c.run_id == run_id).values(state="queued", answer=answer, lease_owner=None, lease_until=None, updated_at=now)
        ).rowcount
        if not requeued:  # a row inserted by someone else between the two statements wins
            insert_new(conn, t, {"run_id": run_id, "state": "queued", "answer": answer, "attempts": 0, "enqueued_at": now, "updated_at": now})

    def ensure(self, run_id: str) -> bool:
        """Queue a run unless it has a queue entry already (accepting, and re-accepting a run
        whose first request died between storing it and queueing it); True when it was added."""
        t, now = self._table, utcnow()
        with self.engine.begin() as conn:
            return insert_new(conn, t, {"run_id": run_id, "state": "queued", "answer": None, "attempts": 0, "enqueued_at": now, "updated_at": now})

    def claim(self, owner: str) -> WorkItem | None:
        """Lease the oldest claimable run: queued, or leased by a worker whose lease ran out."""
        t, now = self._table, utcnow()
        claimable = or_(t.c.state == "queued", and_(t.c.state == "leased", t.c.lease_until < now))
        oldest = select(t.c.run_id).where(claimable).order_by(t.c.enqueued_at).limit(1).with_for_update(skip_locked=True)
        statement = (
            update(t)
            .where(t.c.run_id == oldest.scalar_subquery(), claimable)
            .values(state="leased", lease_owner=owner, lease_until=now + self.lease, attempts=t.c.attempts + 1, updated_at=now)
            .returning(*t.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(statement).mappings().first()
        return WorkItem.model_validate(dict(row)) if row else None

    def heartbeat(self, run_id: str, owner: str) -> bool:
        """Extend the lease; False when it was lost (another worker took the run over)."""
        t, now = self._table, utcnow()
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    update(t)
                    .where(t.c.run_id == run_id, t.c.lease_owner == owner, t.c.state == "leased")
                    .values(lease_until=now + self.lease, updated_at=now)
                ).rowcount
            )

    def complete(self, run_id: str, owner: str, consumed: dict[str, Any] | None = None) -> bool:
        """Done with the run for now (finished, or parked waiting for a person). An answer other
        than the one this worker `consumed` arrived meanwhile: the run is queued again with it."""
        t = self._table
        held = and_(t.c.run_id == run_id, t.c.lease_owner == owner, t.c.state == "leased")
        with self.engine.begin() as conn:
            row = conn.execute(select(t.c.answer).where(held).with_for_update()).first()
            if row is None:
                return False
            waiting = row.answer if row.answer != consumed else None
            conn.execute(
                update(t)
                .where(held)
                .values(state="queued" if waiting else "done", answer=waiting, lease_owner=None, lease_until=None, updated_at=utcnow())
            )
            return True

    def depth(self) -> dict[str, int]:
        """How many runs are queued and leased (for /metrics)."""
        t = self._table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.state, func.count()).where(t.c.state != "done").group_by(t.c.state)).all()
        counts = {"queued": 0, "leased": 0}
        counts.update({state: count for state, count in rows})
        return counts
