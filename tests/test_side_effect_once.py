"""One side-effecting step, replayed three ways, reaches a real Zendesk-style server on
loopback as exactly one applied update:

- retry:  the server applies the PUT but the connection drops before the answer; the executor
          retries under the same Idempotency-Key and the server answers from its record;
- resume: the process dies right after the step; `Runner.resume` runs the rest, and the
          ledger (or the checkpoint) keeps the step from being sent again;
- replay: the same checked step is executed again under the same run id; the ledger answers.
"""

from __future__ import annotations

import pytest

from agent.runner import Runner
from agent.tickets import Ticket
from tests.crash_support import CrashOnce, SimulatedCrash
from tests.loopback_support import SECRETS, build_runtime, tools_config, zendesk_api
from tests.servers.base import Fault, LoopbackServer

TEMPLATE = """
name: update_then_crash
version: 1
description: a ticket update followed by a step that crashes the first time
slots:
  ticket_id: {type: ticket_id, sources: [ticket.ticket_id]}
steps:
  - id: update
    tool: ticket_update
    args: {ticket_id: $slots.ticket_id, status: pending, public_reply: "We are on it."}
  - id: after_update
    tool: crash_once
    args: {value: done}
reply: {kind: text, text: "Ticket {steps.update.output.ticket_id} is {steps.update.output.status}."}
"""


@pytest.fixture
def secrets(monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("checkpoint", ["kept", "lost"])
def test_retry_resume_and_replay_apply_the_update_once(tmp_path, secrets, database_env, checkpoint):
    api = zendesk_api()
    with LoopbackServer(api) as server:
        (tmp_path / "templates").mkdir()
        (tmp_path / "templates" / "update_then_crash.yaml").write_text(TEMPLATE)
        (tmp_path / "allow.yaml").write_text("version: 1\ntools:\n  crash_once: {decision: allow}\n")
        config = tools_config(zendesk=server.url) | {
            "catalogue": {"paths": [str(tmp_path / "templates")]},
            "policies": {"files": [str(tmp_path / "allow.yaml")]},
        }
        runtime = build_runtime(tmp_path, config, "update_then_crash", (CrashOnce(tmp_path / "crashed.marker", hard=False),), database_env)
        ticket = Ticket(text="any news?", requester_email="jane@example.com", ticket_id="1003")

        # 1. retry: applied, answer lost, retried under the same key.
        api.faults.append(Fault("drop_after_processing", method="PUT"))
        with pytest.raises(SimulatedCrash):
            Runner(runtime).submit(ticket, run_id="run_once")
        first, second = api.writes()
        assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
        assert not first.replayed and second.replayed, "the retry was answered from the server's idempotency record"
        [update_result] = [e.payload for e in runtime.store.events("run_once") if e.kind == "tool_result"]
        assert update_result["status"] == "succeeded" and update_result["attempts"] == 2
        assert update_result["output"]["previous_status"] == "open", "the status it changed from survives the lost answer"

        # 2. resume: the crash came right after the step; the rest runs, the update is not sent again,
        #    whether the last checkpoint survived or not (synchronous=NORMAL may lose it on power loss).
        if checkpoint == "lost":
            runtime.graph.checkpointer.delete_thread("run_once")
        resumed = Runner(runtime).resume("run_once")
        assert resumed.status == "completed" and resumed.reply == "Ticket 1003 is pending."
        update_results = [e.payload for e in runtime.store.events("run_once") if e.kind == "tool_result" and e.payload["step_id"] == "update"]
        if checkpoint == "lost":  # the run is re-driven from its ticket and the ledger answers
            assert [r["status"] for r in update_results] == ["succeeded", "deduplicated"]
        else:  # resumed from the checkpoint after the step
            assert [r["status"] for r in update_results] == ["succeeded"]
        assert len(api.writes()) == 2

        # 3. replay: the same checked step, same run id.
        run = runtime.store.get_run("run_once")
        plan = runtime.store.load_plan(run.plan_hash)
        replayed = runtime.executor.run_step(plan, run.plan_hash, plan.steps[0], {}, "run_once")
        assert replayed.status == "deduplicated" and replayed.output == update_results[0]["output"]

    applied = [seen for seen in api.writes() if not seen.replayed]
    assert len(applied) == 1, "the remote API applied exactly one update"
    assert len(api.writes()) == 2, "only the retry after a lost answer reached the server again (and was deduplicated there)"
    assert api.tickets[1003]["status"] == "pending"
    assert [c["body"] for c in api.comments[1003]] == ["We are on it."]
    assert runtime.ledger.get(update_results[0]["idempotency_key"]).status == "succeeded"
