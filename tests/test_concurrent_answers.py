"""People acting at the same moment: two answers to one approval, two requests with one
Idempotency-Key, two resolutions of one escalation. Exactly one wins each time, and what is
stored is what the winner was told (real threads on the real database, SQLite or PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from agent.runner import ApprovalNotPending, Runner
from agent.service.desk import RESOLVE_LEASE, DeskError, EscalationDesk
from agent.service.models import ApiKey
from agent.service.routes.tickets import _accept
from agent.tickets import Ticket
from tools.base import ToolContext
from tools.escalation import Escalation
from tools.sandbox.models import SandboxComment

DEMO = {"text": "Where is my parcel?", "requester_email": "omar@example.com"}


def _race(count: int, action):  # noqa: ANN001, ANN202 (a test helper: run `action(i)` from `count` threads at once)
    barrier = threading.Barrier(count)

    def go(index: int):  # noqa: ANN202
        barrier.wait()
        return action(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(go, range(count)))


def test_of_simultaneous_answers_to_one_approval_exactly_one_is_stored(runtime):
    store = runtime.store
    for trial in range(12):
        run = store.create_run(DEMO, runtime.versions)
        store.request_approval(run.id, f"plan{trial}", [{"step_id": "reset"}])
        answers = _race(6, lambda i, run_id=run.id: store.decide_approval(run_id, i % 2 == 0, f"agent{i}", f"note {i}"))
        winners = [(i, a) for i, a in enumerate(answers) if a is not None]
        assert len(winners) == 1, f"trial {trial}: {len(winners)} answers were accepted"
        index, won = winners[0]
        [stored] = store.approvals(run_id=run.id)
        assert (stored.status, stored.decided_by, stored.note) == (won.status, f"agent{index}", f"note {index}")
        assert stored.status == ("approved" if index % 2 == 0 else "rejected")


def test_answering_an_approval_that_is_not_pending_is_refused(runtime):
    run = runtime.store.create_run(DEMO, runtime.versions)
    with pytest.raises(ApprovalNotPending, match="no pending approval"):
        Runner(runtime).answer_approval(run.id, True, "agent@example.com")


def test_a_run_created_by_a_concurrent_request_with_the_same_key_is_returned_not_an_error(runtime, monkeypatch):
    """The race the service hit: B reads the key's record before A's run exists, then A stores
    the run just before B does. B must answer with A's run, not a 500."""
    store = runtime.store
    create = store.create_run
    raced: list[str] = []

    def a_wins_first(ticket, versions, run_id=None):  # noqa: ANN001, ANN202
        if not raced:
            raced.append(create(ticket, versions, run_id).id)  # request A, a moment earlier
        return create(ticket, versions, run_id)

    monkeypatch.setattr(store, "create_run", a_wins_first)
    ctx = _ServiceStub(runtime)
    key = ApiKey(id="key1", name="platform", role="platform", secret_hash="x")
    run, created = _accept(ctx, Ticket.model_validate(DEMO), key, "same-key")
    assert (run.id, created) == (raced[0], False)
    assert ctx.queue.ensured == [run.id]
    with pytest.raises(IntegrityError):  # the database still refuses a second run with one id
        create(DEMO, runtime.versions, run.id)


class _ServiceStub:
    """The two parts of the service context `_accept` uses: the runtime and the work queue."""

    def __init__(self, runtime) -> None:  # noqa: ANN001
        self.runtime = runtime
        self.queue = _Queue()


class _Queue:
    def __init__(self) -> None:
        self.ensured: list[str] = []

    def ensure(self, run_id: str) -> bool:
        self.ensured.append(run_id)
        return True


def _open_escalation(runtime, ticket_id: str = "1001") -> str:  # noqa: ANN001
    run = runtime.store.create_run(DEMO, runtime.versions)
    tool = runtime.registry.get("escalate_to_human")
    args = tool.input_model.model_validate({"reason": "customer_request", "summary": "wants a person", "ticket_id": ticket_id})
    return tool.invoke(args, ToolContext(run.id, "escalate", f"{run.id}-escalate")).escalation_id


def test_of_simultaneous_resolutions_the_reply_sent_is_the_resolution_stored(runtime):
    desk = EscalationDesk(runtime)
    escalation_id = _open_escalation(runtime)
    desk.claim(escalation_id, "agent")
    replies = [f"reply number {i}" for i in range(6)]

    def resolve(index: int):  # noqa: ANN202
        try:
            return desk.resolve(escalation_id, "agent", f"resolution {index}", replies[index])
        except DeskError as exc:
            return exc

    outcomes = _race(6, resolve)
    won = [i for i, outcome in enumerate(outcomes) if not isinstance(outcome, DeskError)]
    assert len(won) == 1, outcomes
    lost = [o for o in outcomes if isinstance(o, DeskError)]
    assert all(o.status == 409 and ("being resolved" in o.message or "already resolved" in o.message) for o in lost)
    row = desk.get(escalation_id)
    assert (row.status, row.resolution) == ("resolved", f"resolution {won[0]}")
    with runtime.sandbox.session() as session:
        sent = [c.body for c in session.exec(select(SandboxComment).where(SandboxComment.ticket_id == "1001")) if c.public]
    assert sent == [replies[won[0]]]


def test_a_refused_reply_returns_the_escalation_to_its_holder(runtime):
    desk = EscalationDesk(runtime)
    escalation_id = _open_escalation(runtime, ticket_id="no-such-ticket")
    desk.claim(escalation_id, "agent")
    with pytest.raises(DeskError) as refused:
        desk.resolve(escalation_id, "agent", "done", "here is your answer")
    assert refused.value.status in (422, 502)
    row = desk.get(escalation_id)
    assert (row.status, row.claimed_by, row.resolution) == ("claimed", "agent", None)
    resolved, sent = desk.resolve(escalation_id, "agent", "closed without a reply")
    assert (resolved.status, sent) == ("resolved", None)


def test_the_queue_pages_past_the_first_hundred_oldest_first(runtime):
    desk = EscalationDesk(runtime)
    created = [_open_escalation(runtime) for _ in range(7)]
    pages = [[row.id for row in desk.list("open", limit=3, offset=offset)] for offset in (0, 3, 6)]
    assert [len(page) for page in pages] == [3, 3, 1]
    listed = sum(pages, [])
    assert sorted(listed) == sorted(created) and len(set(listed)) == 7
    times = [desk.get(escalation_id).created_at for escalation_id in listed]
    assert times == sorted(times)


def test_a_sandbox_call_repeated_at_once_with_one_key_acts_once_and_answers_alike(runtime):
    tool = runtime.registry.get("ticket_update")

    def update(index: int):  # noqa: ANN202
        args = tool.input_model.model_validate({"ticket_id": "1002", "public_reply": f"answer {index}", "status": "pending"})
        return tool.invoke(args, ToolContext("run-x", "reply", "run-x-reply-key")).model_dump(mode="json")

    outputs = _race(6, update)
    assert all(output == outputs[0] for output in outputs)
    with runtime.sandbox.session() as session:
        public = [c.body for c in session.exec(select(SandboxComment).where(SandboxComment.ticket_id == "1002")) if c.public]
    assert len(public) == 1 and public[0].startswith("answer ")


def test_a_resolution_left_behind_by_a_crash_can_be_finished_by_its_holder_after_the_lease(runtime):
    desk = EscalationDesk(runtime)
    escalation_id = _open_escalation(runtime)
    desk.claim(escalation_id, "agent")
    table = Escalation.__table__
    with runtime.engine.begin() as conn:  # a resolve request died while sending its reply
        conn.execute(table.update().where(table.c.id == escalation_id).values(status="resolving", resolution="first try"))
    with pytest.raises(DeskError, match="being resolved by agent"):
        desk.resolve(escalation_id, "agent", "second try")
    stale = datetime.now(UTC) - RESOLVE_LEASE - timedelta(seconds=1)
    with runtime.engine.begin() as conn:
        conn.execute(table.update().where(table.c.id == escalation_id).values(updated_at=stale))
    with pytest.raises(DeskError, match="being resolved by agent"):
        desk.resolve(escalation_id, "someone else", "not mine")
    resolved, _ = desk.resolve(escalation_id, "agent", "second try")
    assert (resolved.status, resolved.resolution) == ("resolved", "second try")


def test_an_answer_whose_run_cannot_be_queued_is_not_stored(runtime):
    """The answer and the queued run commit together: a failure (or a crash) between them
    leaves the approval pending, to be answered again, never answered but stuck."""
    from agent.service.models import ApiKey
    from agent.service.routes.approvals import decide

    run = runtime.store.create_run(DEMO, runtime.versions)
    approval = runtime.store.request_approval(run.id, "plan-x", [{"step_id": "reset"}])
    ctx = _ServiceStub(runtime)

    def queue_down(run_id, answer=None, conn=None):  # noqa: ANN001, ANN202
        raise ConnectionError("the database went away")

    ctx.queue.enqueue = queue_down
    with pytest.raises(ConnectionError):
        decide(ctx, approval.id, True, ApiKey(id="key_agent", name="agent", role="agent", secret_hash="-"), "")
    [stored] = runtime.store.approvals(run_id=run.id)
    assert (stored.status, stored.decided_by) == ("pending", None)


def test_simultaneous_first_attempts_at_one_side_effect_are_both_noted(runtime):
    ledger = runtime.ledger
    _race(5, lambda i: ledger.begin("run-y-step-key", "run-y", "reset", "password_reset"))
    noted = ledger.get("run-y-step-key")
    assert (noted.status, noted.attempts) == ("started", 5)
