"""A password reset cannot run without verification, above its rate limit or for an account the
requester does not own, and a needs-approval step waits for a person: checked in the plan, and
again by the gate right before the side effect, on what really happened."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agent.runner import Runner
from agent.tickets import Ticket
from plans.models import Plan, ReplySpec, Step
from policies.engine import GateContext
from policies.ratelimit import RateLimiter, RateUse
from tests.policy_support import fast_runtime, sandbox_resets, side_effects

RESET = "I forgot my password and can't log in"


def reset_ticket(requester: str = "jane@example.com", ticket_id: str = "1003", **extra) -> Ticket:
    return Ticket(text=RESET, requester_email=requester, ticket_id=ticket_id, **extra)


@pytest.fixture
def runtime(tmp_path, embedder, local_model, database_env):
    built = fast_runtime(tmp_path / "data", embedder, local_model, **database_env)
    yield built
    built.engine.dispose()


def reset_plan(runtime, ticket: Ticket) -> Plan:
    outcome = runtime.planner.plan("password_reset", ticket)
    assert outcome.plan is not None, outcome
    return outcome.plan


def run_reset_step(runtime, plan, outputs, ticket, run_id="run_gate", approved=None):
    """The executor asked to run make_password directly, as a resumed or tampered run would;
    `approved`: the needs-approval rules a person approved for it."""
    step = next(s for s in plan.steps if s.tool == "password_reset")
    context = GateContext(ticket=ticket.model_dump(mode="json"), approved_rules={step.id: approved} if approved is not None else {})
    return runtime.executor.run_step(plan, plan.hash, step, outputs, run_id, context)


LOOKUP_JANE = {"user_id": "u_1001", "email": "jane@example.com", "display_name": "Jane Doe", "status": "active"}


# --- verification ----------------------------------------------------------------------------
def test_a_plan_without_a_verification_step_is_denied_naming_the_rule(runtime):
    plan = Plan(
        template="password_reset",
        template_version=1,
        catalogue_version="test",
        ticket_id="1003",
        slots={},
        steps=[
            Step(id="lookup", tool="account_lookup", args={"email": "jane@example.com"}),
            Step(id="reset", tool="password_reset", args={"user_id": "$steps.lookup.output.user_id", "verification_id": "ver_forged"}),
        ],
        reply=ReplySpec(kind="none"),
    )
    verdict = runtime.policy.evaluate(plan, reset_ticket().model_dump(mode="json"))
    [reset] = [d for d in verdict.steps if d.tool == "password_reset"]
    assert verdict.decision == "deny" and reset.decision == "deny"
    assert reset.rule_id == "reset-after-verification"


def test_the_gate_refuses_a_reset_whose_verification_failed_or_was_for_another_account(runtime):
    ticket = reset_ticket()
    plan = reset_plan(runtime, ticket)
    never_ran = run_reset_step(runtime, plan, {"pull_up_account": LOOKUP_JANE}, ticket)
    assert never_ran.status == "rejected" and never_ran.error["kind"] == "invalid_arguments"  # nothing to reset with
    other = {"user_id": "u_1002", "verified": True, "verification_id": "ver_2222222222222222", "method": "requester_email_match"}
    elsewhere = run_reset_step(runtime, plan, {"pull_up_account": LOOKUP_JANE, "verify_identity": other}, ticket)
    assert elsewhere.status == "rejected" and elsewhere.error["rule_id"] == "reset-after-verification"
    failed = {"user_id": "u_1001", "verified": False, "verification_id": "ver_0000000000000000", "method": "requester_email_match"}
    outputs = {"pull_up_account": LOOKUP_JANE, "verify_identity": failed}
    unverified = run_reset_step(runtime, plan, outputs, ticket, run_id="run_gate2")
    assert unverified.status == "rejected" and unverified.error["rule_id"] == "reset-after-verification"
    assert "verified=False" in unverified.policy.reason
    assert sandbox_resets(runtime) == (0, 0) and side_effects(runtime) == []


# --- ownership -------------------------------------------------------------------------------
def test_the_gate_refuses_a_reset_of_an_account_the_requester_does_not_own(runtime):
    ticket = reset_ticket(requester="omar@example.com", ticket_id="1001")
    plan = reset_plan(runtime, reset_ticket())  # a plan for jane's account, run for omar's ticket
    verified = {"user_id": "u_1001", "verified": True, "verification_id": "ver_1111111111111111", "method": "requester_email_match"}
    outputs = {"pull_up_account": LOOKUP_JANE, "verify_identity": verified}
    result = run_reset_step(runtime, plan, outputs, ticket)
    assert result.status == "rejected" and result.error["rule_id"] == "reset-requester-owns-account"
    assert sandbox_resets(runtime) == (0, 0)


def test_a_reset_for_someone_elses_account_never_resets_anything(runtime):
    runner = Runner(runtime)
    result = runner.submit(Ticket(text=f"{RESET}. The account is omar@example.com", requester_email="jane@example.com", ticket_id="1003"))
    assert result.status == "escalated"
    assert "input-guard.cross_account" in result.escalation["detail"]
    assert side_effects(runtime, result.run_id) == ["escalate_to_human"]
    assert sandbox_resets(runtime) == (0, 0)


# --- rate limit ------------------------------------------------------------------------------
def test_the_fourth_reset_in_a_day_is_refused_naming_the_limit(runtime):
    runner = Runner(runtime)
    done = [runner.submit(reset_ticket()) for _ in range(3)]
    assert [r.status for r in done] == ["completed"] * 3
    fourth = runner.submit(reset_ticket())
    assert fourth.status == "escalated" and fourth.escalation["reason"] == "policy_denied"
    assert "resets-per-requester-per-day" in fourth.escalation["detail"]
    assert sandbox_resets(runtime)[0] == 3
    assert side_effects(runtime, fourth.run_id) == ["escalate_to_human"]


def test_the_gate_enforces_the_limit_even_when_the_plan_check_passed(runtime):
    """Limits used up between the check and the side effect (another worker) still stop it."""
    ticket = reset_ticket()
    plan = reset_plan(runtime, ticket)
    verdict = runtime.policy.evaluate(plan, ticket.model_dump(mode="json"))
    assert verdict.decision == "allow"
    limiter = RateLimiter(runtime.engine)
    for n in range(3):
        limiter.take([RateUse("resets-per-requester-per-day", "jane@example.com", 100, 86400)], f"key{n}", "run_other")
    verified = {"user_id": "u_1001", "verified": True, "verification_id": "ver_1111111111111111", "method": "requester_email_match"}
    result = run_reset_step(runtime, plan, {"pull_up_account": LOOKUP_JANE, "verify_identity": verified}, ticket)
    assert result.status == "rejected" and result.error["rule_id"] == "resets-per-requester-per-day"
    assert sandbox_resets(runtime) == (0, 0)


def test_a_run_driven_again_after_a_crash_is_not_held_to_its_own_earlier_use(runtime):
    """A worker died after the third reset of the day was counted; the run is driven again from
    its ticket. Its plan check must not count that use against it (the gate knows it by key)."""
    ticket = reset_ticket()
    plan = reset_plan(runtime, ticket)
    limiter = RateLimiter(runtime.engine)
    for n, run_id in enumerate(["run_a", "run_b", "run_crashed"]):
        limiter.take([RateUse("resets-per-requester-per-day", "jane@example.com", 3, 86400)], f"key{n}", run_id)
    again = runtime.policy.evaluate(plan, ticket.model_dump(mode="json"), run_id="run_crashed")
    assert again.decision == "allow", again
    other = runtime.policy.evaluate(plan, ticket.model_dump(mode="json"), run_id="run_new")
    assert other.decision == "deny" and "used 3 times" in str(other.model_dump())


def test_of_runs_racing_for_the_last_uses_only_the_limit_get_them(runtime):
    """Check and count in one locked transaction: six runs at once, a limit of three, and a
    second rule that must not keep a use the first rule refused (all or none)."""
    limiter = RateLimiter(runtime.engine)
    barrier = threading.Barrier(6)

    def take(index: int) -> str | None:
        barrier.wait()
        uses = [RateUse("per-requester", "jane@example.com", 3, 86400), RateUse("per-account", "u_1001", 10, 86400)]
        return limiter.take(uses, f"step-key-{index}", f"run{index}")

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(take, range(6)))
    assert outcomes.count(None) == 3 and outcomes.count("per-requester") == 3
    assert limiter.used("per-requester", "jane@example.com", 86400) == 3
    assert limiter.used("per-account", "u_1001", 86400) == 3


def test_a_retried_step_is_not_counted_twice(runtime):
    limiter = RateLimiter(runtime.engine)
    assert limiter.take([RateUse("r", "Jane@Example.com", 1, 60)], "same-key", "run1") is None
    assert limiter.take([RateUse("r", "jane@example.com", 1, 60)], "same-key", "run1") is None  # counted already, not full
    assert limiter.used("r", "jane@example.com", 60) == 1
    assert limiter.used("r", "jane@example.com", 60, excluding="same-key") == 0
    assert limiter.take([RateUse("r", "jane@example.com", 5, 60)], "other-key", "run2") is None
    # the window is full now, but this step's use was counted before: a retry is not refused
    assert limiter.take([RateUse("r", "jane@example.com", 1, 60)], "same-key", "run1") is None
    assert limiter.used("r", "jane@example.com", 60) == 2


# --- approval --------------------------------------------------------------------------------
def test_a_needs_approval_reset_waits_for_a_person_then_runs_once_approved(runtime):
    runner = Runner(runtime)
    waiting = runner.submit(reset_ticket(customer_tier="vip"))
    assert waiting.status == "waiting_approval"
    assert [s["step_id"] for s in waiting.pending_approval] == ["make_password"]
    assert waiting.pending_approval[0]["rule_id"] == "vip-reset-needs-approval"
    assert sandbox_resets(runtime) == (0, 0) and side_effects(runtime) == []
    assert runtime.store.get_run(waiting.run_id).status == "waiting_approval"
    [pending] = runtime.store.approvals(status="pending")
    assert pending.run_id == waiting.run_id

    approved = runner.answer_approval(waiting.run_id, True, "agent@example.com")
    assert approved.status == "completed"
    assert sandbox_resets(runtime)[0] == 1
    gate = next(s["policy"] for s in approved.steps if s["step_id"] == "make_password")
    assert gate["decision"] == "allow"
    assert [c["rule_id"] for c in gate["checks"] if "approved by a person" in c["reason"]] == ["vip-reset-needs-approval"]


def test_an_approval_covers_only_the_rules_the_person_was_shown(tmp_path, embedder, local_model, database_env):
    """A rule on a value known only at the gate (the account id a lookup returns) was not in the
    approval request, so approving the VIP reset does not approve it."""
    extra = tmp_path / "extra.yaml"
    extra.write_text(
        "version: 1\nrules:\n  - id: u1001-resets-need-approval\n    tools: [password_reset]\n"
        "    when: {args: {user_id: [u_1001]}}\n    decision: needs_approval\n    reason: resets of u_1001 need a second look\n"
    )
    runtime = fast_runtime(tmp_path / "data", embedder, local_model, CASEPLAN__POLICIES__FILES=f"[{extra}]", **database_env)
    runner = Runner(runtime)
    waiting = runner.submit(reset_ticket(customer_tier="vip"))
    assert [s["rule_id"] for s in waiting.pending_approval] == ["vip-reset-needs-approval"]
    done = runner.answer_approval(waiting.run_id, True, "agent@example.com")
    assert done.status == "escalated" and sandbox_resets(runtime) == (0, 0)
    gate = next(s["policy"] for s in done.steps if s["step_id"] == "make_password")
    assert gate["rule_id"] == "u1001-resets-need-approval"
    assert "the person approved this step for vip-reset-needs-approval, not for this rule" in gate["reason"]
    runtime.engine.dispose()


def test_an_answered_approval_is_used_when_the_run_is_driven_again_without_its_checkpoint(runtime):
    """The answer is stored, but the checkpoint is gone (a worker on another machine, or a crash
    before the run was queued): re-driven from its ticket, the run uses the stored answer
    instead of pausing for an approval nobody can answer any more."""
    runner = Runner(runtime)
    waiting = runner.submit(reset_ticket(customer_tier="vip"))
    assert runtime.store.decide_approval(waiting.run_id, True, "agent-7", "checked by phone") is not None
    runtime.graph.checkpointer.delete_thread(waiting.run_id)
    resumed = runner.resume(waiting.run_id)
    assert resumed.status == "completed" and sandbox_resets(runtime)[0] == 1
    answers = [e.payload["answer"] for e in runtime.store.events(waiting.run_id) if e.kind == "approval"]
    assert answers == [{"approved": True, "by": "agent-7", "note": "checked by phone"}]


def test_a_rejected_approval_escalates_without_the_side_effect(runtime):
    runner = Runner(runtime)
    waiting = runner.submit(reset_ticket(customer_tier="vip"))
    rejected = runner.answer_approval(waiting.run_id, False, "agent@example.com", "call the customer")
    assert rejected.status == "escalated" and rejected.escalation["reason"] == "approval_rejected"
    assert sandbox_resets(runtime) == (0, 0)
    assert side_effects(runtime, waiting.run_id) == ["escalate_to_human"]


def test_the_gate_refuses_a_needs_approval_step_nobody_approved(runtime):
    ticket = reset_ticket(customer_tier="vip")
    plan = reset_plan(runtime, ticket)
    verified = {"user_id": "u_1001", "verified": True, "verification_id": "ver_1111111111111111", "method": "requester_email_match"}
    result = run_reset_step(runtime, plan, {"pull_up_account": LOOKUP_JANE, "verify_identity": verified}, ticket)
    assert result.status == "rejected" and result.error["rule_id"] == "vip-reset-needs-approval"
    assert "no approval was given" in result.error["message"]


def test_replay_judges_limits_as_they_stood_when_the_run_arrived_and_counts_nothing(runtime):
    from datetime import UTC, datetime, timedelta

    limiter = RateLimiter(runtime.engine)
    arrived = datetime.now(UTC)
    for n in range(3):
        limiter.take([RateUse("resets-per-requester-per-day", "jane@example.com", 100, 86400)], f"before{n}", "run_earlier", now=arrived - timedelta(minutes=5))
    limiter.take([RateUse("resets-per-requester-per-day", "jane@example.com", 100, 86400)], "after", "run_later", now=arrived + timedelta(minutes=5))
    replica = runtime.policy.for_replay()
    ticket = reset_ticket()
    plan = reset_plan(runtime, ticket)
    earlier = replica.evaluate(plan, ticket.model_dump(mode="json"), received_at=arrived - timedelta(minutes=10))
    later = replica.evaluate(plan, ticket.model_dump(mode="json"), received_at=arrived)
    assert earlier.decision == "allow"  # the three uses came after that run arrived
    assert (later.decision, [d.rule_id for d in later.blocking]) == ("deny", ["resets-per-requester-per-day"])
    assert replica.limiter.take([RateUse("resets-per-requester-per-day", "jane@example.com", 100, 86400)], "replayed", "run_x") is None
    assert limiter.used("resets-per-requester-per-day", "jane@example.com", 86400, now=arrived + timedelta(hours=1)) == 4


def test_replay_serves_the_recorded_rate_limit_counts_of_runs_that_overlapped(runtime):
    """Run B arrives, run A for the same requester makes its reset first, then B runs: B's gate
    saw A's use, which came after B arrived. The counters are outside state, so replay serves
    the counts B recorded and reproduces B, where counting as of B's arrival would not."""
    from agent.audit import AuditSource
    from agent.replay import Replayer

    runner = Runner(runtime)
    late = runtime.store.create_run(reset_ticket().model_dump(mode="json"), runtime.versions)
    first = runner.submit(reset_ticket())
    assert first.status == "completed"
    driven = runner.resume(late.id)
    assert driven.status == "completed"
    gate = next(s["policy"] for s in driven.steps if s["step_id"] == "make_password")
    assert "1 of 3 used" in " ".join(c["reason"] for c in gate["checks"])
    report = Replayer(runtime, AuditSource.open(runtime.settings)).replay(late.id)
    assert report.status == "reproduced", report.message


# --- whose ticket ----------------------------------------------------------------------------
def _ticket_row(runtime, ticket_id: str):  # noqa: ANN202
    from tools.sandbox.models import SandboxTicket

    with runtime.sandbox.session() as session:
        return session.get(SandboxTicket, ticket_id)


def test_the_ticket_being_handled_is_not_changed_when_the_helpdesk_says_it_is_someone_elses(runtime):
    """A requester paired with another customer's ticket id: the lookup shows the owner, and
    the gate refuses the update before it happens (it was sent, then caught by the reply guard)."""
    result = Runner(runtime).submit(Ticket(text="Thanks, you can close my ticket, it's fixed now.", requester_email="jane@example.com", ticket_id="1001"))
    assert result.status == "escalated" and "belongs to another customer" in result.escalation["detail"], result.escalation
    assert _ticket_row(runtime, "1001").status == "open"
    assert "ticket_update" not in side_effects(runtime, result.run_id)



def test_no_reset_is_sent_on_a_ticket_that_belongs_to_someone_else(runtime):
    """The password reset reads the ticket being handled first: paired with another customer's
    ticket id, the run does nothing (no reset link, no update) and a person gets it."""
    result = Runner(runtime).submit(Ticket(text="I forgot my password and can't log in", requester_email="jane@example.com", ticket_id="1001"))
    assert result.status == "escalated" and "belongs to another customer" in result.escalation["detail"], result.escalation
    assert [(s["step_id"], s["status"]) for s in result.steps][:2] == [("look_up_ticket", "succeeded"), ("pull_up_account", "succeeded")]
    assert sandbox_resets(runtime) == (0, 0) and not {"password_reset", "ticket_update"} & set(side_effects(runtime, result.run_id))
    assert _ticket_row(runtime, "1001").status == "open"

def test_a_status_reply_is_not_posted_on_another_customers_thread(runtime):
    """Jane asks about her own ticket 1003, but the platform paired her with Omar's 1001: the
    reply would tell Omar the subject of Jane's ticket. The handled ticket is read first, and
    the reply is held for a person."""
    result = Runner(runtime).submit(Ticket(text="What is the status of ticket 1003?", requester_email="jane@example.com", ticket_id="1001"))
    assert [s["step_id"] for s in result.steps][:2] == ["read_handled_ticket", "lookup_ticket"]
    assert result.status == "escalated" and "read_handled_ticket read a record that belongs to another customer" in result.escalation["detail"], result.escalation
    assert result.reply is None or "Cannot sign in" not in str(result.reply)


def test_a_named_ticket_is_not_closed_from_another_customers_thread(runtime):
    """The ticket named is Jane's own, the thread is Omar's: nothing is changed until a person looks."""
    result = Runner(runtime).submit(Ticket(text="Thanks, all sorted, you can mark ticket 1003 as resolved", requester_email="jane@example.com", ticket_id="1001"))
    assert result.status == "escalated" and "belongs to another customer" in result.escalation["detail"], result.escalation
    assert _ticket_row(runtime, "1003").status == "open" and "ticket_update" not in side_effects(runtime, result.run_id)


def test_own_thread_status_and_close_still_complete(runtime):
    status = Runner(runtime).submit(Ticket(text="What is the status of ticket 1004?", requester_email="jane@example.com", ticket_id="1003"))
    assert status.status == "completed" and "Old request" in status.reply, status
    closed = Runner(runtime).submit(Ticket(text="Thanks, all sorted, you can mark ticket 1003 as resolved", requester_email="jane@example.com", ticket_id="1003"))
    assert closed.status == "completed" and _ticket_row(runtime, "1003").status == "solved", closed


def test_a_ticket_nobody_owns_is_not_shown_to_a_customer(runtime):
    from tools.sandbox.helpdesk import open_ticket

    anonymous = open_ticket(runtime.sandbox, "Private", "my private diagnosis, please delete record 4471", None)
    result = Runner(runtime).submit(Ticket(text=f"What is the status of ticket {anonymous}?", requester_email="jane@example.com", ticket_id="1003"))
    assert result.status == "escalated" and "cannot be tied to the requester" in result.escalation["detail"], result.escalation
    assert result.reply is None or "diagnosis" not in str(result.reply)
