"""Runs tickets through the graph: submit, resume after a crash, answer an approval."""

from __future__ import annotations

from typing import Any

from langgraph.types import Command
from pydantic import BaseModel

from agent.db import UNAVAILABLE_ERRORS
from agent.integrity import UNFINISHED_STATUSES
from agent.ownership import LeaseLost
from agent.runtime import Runtime
from agent.tickets import Ticket


class RunResult(BaseModel):
    """What a caller gets back: enough to show the route, plan, steps and reply."""

    run_id: str
    status: str
    route: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    plan_hash: str | None = None
    steps: list[dict[str, Any]] = []
    reply: str | None = None
    citations: list[str] = []
    escalation: dict[str, Any] | None = None
    pending_approval: list[dict[str, Any]] = []
    error: str | None = None


class ApprovalNotPending(LookupError):
    """The run has no approval waiting (never asked, or someone else answered first)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} has no pending approval")


class Runner:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @staticmethod
    def _config(run_id: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": run_id}}

    def submit(self, ticket: Ticket, run_id: str | None = None) -> RunResult:
        """Record the run first, then drive it as far as it can go."""
        run = self.runtime.store.create_run(ticket.model_dump(mode="json"), self.runtime.versions, run_id)
        received = run.created_at.isoformat()
        return self._drive(run.id, {"run_id": run.id, "ticket": ticket.model_dump(mode="json"), "received_at": received})

    def resume(self, run_id: str) -> RunResult:
        """Continue an interrupted run: from its last checkpoint if it has one, otherwise from
        its recorded ticket. Either way the ledger skips side effects that already happened."""
        ticket = self.runtime.store.original_ticket(run_id)  # the stored one is masked
        if self.runtime.graph.get_state(self._config(run_id)).values:
            return self._drive(run_id, None)
        received = self.runtime.store.get_run(run_id).created_at.isoformat()
        return self._drive(run_id, {"run_id": run_id, "ticket": ticket, "received_at": received})

    def continue_run(self, run_id: str, answer: dict[str, Any] | None = None) -> RunResult:
        """What a queue worker does with a run it leased: answer the pending approval when it
        holds an answer and the run is still paused, otherwise resume (a re-leased run whose
        worker died picks up from its checkpoint)."""
        if answer is not None and self.runtime.graph.get_state(self._config(run_id)).interrupts:
            return self._drive(run_id, Command(resume=answer))
        return self.resume(run_id)

    def _drive(self, run_id: str, graph_input: Any) -> RunResult:
        durability = self.runtime.settings.checkpoints.durability
        try:
            state = self.runtime.graph.invoke(graph_input, self._config(run_id), durability=durability)
        except (LeaseLost, *UNAVAILABLE_ERRORS):
            raise  # another worker has the run, or the database is away: the run is resumed, not closed
        except Exception as exc:  # a bug: the run is closed as failed on the record, not left running
            self.close_failed(run_id, exc)
            raise
        return self._result(run_id, state)

    def close_failed(self, run_id: str, exc: BaseException) -> None:
        """End a run that cannot go on as `failed`, with the error on the record and the run
        sealed (an unsealed finished run is what tampering looks like); a finished run is left as it is."""
        store = self.runtime.store
        if store.get_run(run_id).status not in UNFINISHED_STATUSES:
            return
        message = f"internal error: {type(exc).__name__}: {exc}"[:500]
        store.append_event(run_id, "error", "runner", {"error": message})
        store.finish_run(run_id, status="failed", error=message)

    def answer_approval(self, run_id: str, approved: bool, by: str, note: str = "") -> RunResult:
        self.runtime.store.get_run(run_id)
        if self.runtime.store.decide_approval(run_id, approved, by, note) is None:
            raise ApprovalNotPending(run_id)
        return self._drive(run_id, Command(resume={"approved": approved, "by": by, "note": note}))

    def _result(self, run_id: str, state: dict[str, Any]) -> RunResult:
        interrupts = state.get("__interrupt__") or []
        pending = [step for item in interrupts for step in (item.value or {}).get("steps", [])]
        reply = state.get("reply") or {}
        if interrupts:
            status = "waiting_approval"
        elif state.get("status") in ("completed", "escalated", "failed"):
            status = state["status"]  # what `done` stored
        else:
            status = self.runtime.store.get_run(run_id).status
        return RunResult(
            run_id=run_id,
            status=status,
            route=state.get("route"),
            plan=state.get("plan"),
            plan_hash=state.get("plan_hash"),
            steps=state.get("results", []),
            reply=reply.get("text"),
            citations=reply.get("citations", []),
            escalation=state.get("escalation"),
            pending_approval=pending,
            error=state.get("error"),
        )
