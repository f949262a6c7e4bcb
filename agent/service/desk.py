"""The escalation desk: people claim, release and resolve escalations; a resolution may carry
a reply to the customer, sent through the `ticket_update` tool once (ledger, idempotency key).

Every move is one conditional UPDATE, so of two people (or two tabs) acting at once exactly one
wins and the other gets a 409. Resolving passes through `resolving` while the reply is sent. Each
move that happens is written to the desk's trail (`DeskEvent`) in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from pydantic import ValidationError
from sqlalchemy import insert, update
from sqlmodel import Session, select

from agent.runtime import Runtime
from tools.base import ToolContext, ToolError
from tools.escalation import DeskEvent, Escalation

EscalationStatus = Literal["open", "claimed", "resolving", "resolved"]
# A `resolving` escalation whose request died (a crash while the reply was being sent) can be
# resolved again by its holder, or taken back by an admin, after this long; longer than a
# helpdesk call with its retries.
RESOLVE_LEASE = timedelta(minutes=5)


class DeskError(Exception):
    """A desk action that cannot be done now: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Move(NamedTuple):
    """What the trail says about one move: what happened, who did it, and its particulars."""

    action: str
    actor: str
    detail: dict[str, Any] = {}


class EscalationDesk:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self._table = Escalation.__table__

    def list(self, status: str | None = None, queue: str | None = None, limit: int = 100, offset: int = 0) -> Sequence[Escalation]:
        """Oldest first (the order a queue is worked in), a page at a time."""
        with Session(self.engine) as session:
            query = select(Escalation).order_by(Escalation.created_at, Escalation.id).offset(offset).limit(limit)
            if status:
                query = query.where(Escalation.status == status)
            if queue:
                query = query.where(Escalation.queue == queue)
            return session.exec(query).all()

    def get(self, escalation_id: str) -> Escalation:
        with Session(self.engine) as session:
            row = session.get(Escalation, escalation_id)
        if row is None:
            raise DeskError(404, f"unknown escalation id {escalation_id!r}")
        return row

    def history(self, escalation_id: str) -> Sequence[DeskEvent]:
        """The escalation's trail, oldest first."""
        with Session(self.engine) as session:
            return session.exec(select(DeskEvent).where(DeskEvent.escalation_id == escalation_id).order_by(DeskEvent.id)).all()

    def _transition(
        self, escalation_id: str, where_status: str, holder: str | None, idle_since: datetime | None = None, move: Move | None = None, **values: object
    ) -> bool:
        """Move one escalation from `where_status` (held by `holder`, when given; untouched since
        `idle_since`, when given) in one UPDATE, and write `move` to the trail if it happened.
        What an agent typed (a resolution, a reply) is stored masked, like the rest of the
        record; the reply itself goes to the helpdesk as typed."""
        mask = self.runtime.store.protection.mask
        if isinstance(values.get("resolution"), str):
            values["resolution"] = mask(values["resolution"])
        t = self._table
        condition = [t.c.id == escalation_id, t.c.status == where_status]
        if holder is not None:
            condition.append(t.c.claimed_by == holder)
        if idle_since is not None:
            condition.append(t.c.updated_at < idle_since)
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            moved = bool(conn.execute(update(t).where(*condition).values(**values, updated_at=now)).rowcount)
            if moved and move is not None:
                run_id = conn.execute(select(t.c.run_id).where(t.c.id == escalation_id)).scalar_one()
                trail = {"escalation_id": escalation_id, "run_id": run_id, "action": move.action, "actor": move.actor, "detail": mask(move.detail), "at": now}
                conn.execute(insert(DeskEvent.__table__).values(**trail))
        return moved

    def claim(self, escalation_id: str, by: str) -> Escalation:
        """Take an open escalation; claiming one you already hold is a no-op."""
        if not self._transition(escalation_id, "open", None, move=Move("claimed", by), status="claimed", claimed_by=by):
            row = self.get(escalation_id)
            if not (row.status == "claimed" and row.claimed_by == by):
                raise DeskError(409, self._why_not(row, by))
        return self.get(escalation_id)

    def release(self, escalation_id: str, by: str, *, admin: bool = False) -> Escalation:
        """Give back an escalation you hold. An `admin` also takes back one someone else holds
        (a key revoked mid-claim, a person gone), so its customer is not left without an answer."""
        if self._transition(escalation_id, "claimed", by, move=Move("released", by), status="open", claimed_by=None):
            return self.get(escalation_id)
        row = self.get(escalation_id)
        if not (admin and row.claimed_by != by and self._take_back(row, by)):
            raise DeskError(409, self._why_not(row, by))
        return self.get(escalation_id)

    def _take_back(self, row: Escalation, by: str) -> bool:
        """Reopen `row` as it was just read (same status and holder, or nothing moves), naming the
        holder on the trail. A `resolving` one only once idle past RESOLVE_LEASE: before that its
        request may still be sending the reply, and a second resolve would race it."""
        if row.status not in ("claimed", "resolving"):
            return False
        idle_since = datetime.now(UTC) - RESOLVE_LEASE if row.status == "resolving" else None
        move = Move("taken_back", by, {"from": row.claimed_by, "was": row.status})
        return self._transition(row.id, row.status, row.claimed_by, idle_since, move, status="open", claimed_by=None, resolution=None)

    def resolve(self, escalation_id: str, by: str, resolution: str, reply: str | None = None) -> tuple[Escalation, dict | None]:
        """Resolve an escalation you hold. It turns `resolving` first, so the one request that
        wins is the one whose reply is sent and whose resolution is stored. If the helpdesk
        refuses the reply, the escalation goes back to claimed and nothing is lost."""
        stale = datetime.now(UTC) - RESOLVE_LEASE
        if not (
            self._transition(escalation_id, "claimed", by, status="resolving", resolution=resolution)
            or self._transition(escalation_id, "resolving", by, idle_since=stale, resolution=resolution)
        ):
            raise DeskError(409, self._why_not(self.get(escalation_id), by))
        try:
            sent = self._send_reply(self.get(escalation_id), reply) if reply else None
        except Exception as exc:
            refused = Move("reply_refused", by, {"reply": reply, "error": exc.message if isinstance(exc, DeskError) else type(exc).__name__})
            self._transition(escalation_id, "resolving", by, move=refused, status="claimed", resolution=None)
            raise
        done = Move("resolved", by, {"resolution": resolution, "reply": reply, "ticket_update": sent})
        self._transition(escalation_id, "resolving", by, move=done, status="resolved")
        return self.get(escalation_id), sent

    def _send_reply(self, row: Escalation, reply: str) -> dict:
        if not row.ticket_id:
            raise DeskError(422, "this escalation has no ticket id, so a reply cannot be sent; resolve it without one")
        tool = self.runtime.registry.get("ticket_update")
        try:
            args = tool.input_model.model_validate({"ticket_id": row.ticket_id, "public_reply": reply, "status": "pending"})
        except ValidationError as exc:
            raise DeskError(422, f"reply: {exc.errors()[0]['msg']}") from None
        key = f"{row.id}:resolve-reply"
        ledger = self.runtime.ledger
        seen = ledger.get(key)
        if seen is not None and seen.status == "succeeded":
            return seen.output or {}
        ledger.begin(key, row.run_id, "resolve", tool.name)
        try:
            output = tool.invoke(args, ToolContext(row.run_id, "resolve", key)).model_dump(mode="json")
        except ToolError as exc:
            ledger.finish(key, error=exc.as_dict())
            raise DeskError(502, f"the helpdesk did not take the reply ({exc.kind}): {exc.message}") from None
        ledger.finish(key, output=output)
        return output

    @staticmethod
    def _why_not(row: Escalation, by: str) -> str:
        if row.status == "resolved":
            return f"escalation {row.id} is already resolved"
        if row.status == "resolving":
            return f"escalation {row.id} is being resolved by {row.claimed_by}"
        if row.status == "claimed" and row.claimed_by != by:
            return f"escalation {row.id} is claimed by {row.claimed_by}"
        if row.status == "open":
            return f"escalation {row.id} is not claimed; claim it first"
        return f"escalation {row.id} is {row.status}"
