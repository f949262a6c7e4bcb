"""Replay from the record: recorded runs are reproduced exactly with the world out of reach
(no network, no tool, no model: each one raises and is noted if touched); a change of policy
shows as the first divergence; `--live` names the runs whose decisions a new threshold changes."""

from __future__ import annotations

import json

import pytest

from agent.audit import AuditSource, RunQuery
from agent.models.calls import ModelCall
from agent.replay import Replayer
from agent.routing import RouteDecision
from agent.runner import Runner
from agent.runtime import Runtime
from agent.tooling import registry_from_settings
from tests.conftest import make_settings
from tests.record_support import CLOSE_TICKET, TICKETS, TIEBREAK_TICKET, cli_env, invoke, record, world_out_of_reach
from tests.tooling_doubles import CountingSideEffect
from tools.base import ToolError
from tools.sandbox.seed import seed_demo


@pytest.mark.slow
def test_fifty_recorded_demo_runs_replay_exactly_without_touching_the_world(runner, runtime, settings, monkeypatch):
    ids = record(runner, 50)
    statuses = {runtime.store.get_run(run_id).status for run_id in ids}
    assert statuses == {"completed", "escalated"}
    env = cli_env(settings)
    with world_out_of_reach(monkeypatch, runtime.registry) as reached:
        everything = invoke(env, "replay", "--all", "--json")
        one = invoke(env, "replay", ids[0])
    assert reached == []
    assert everything.exit_code == 0, everything.output
    summary = json.loads(everything.stdout)
    assert (summary["replayed"], summary["ok"], summary["failed"], summary["skipped"]) == (50, 50, 0, [])
    assert {report["run_id"] for report in summary["reports"]} == set(ids)
    for report in summary["reports"]:
        assert report["status"] == "reproduced", report["message"]
        recorded = len(runtime.store.events(report["run_id"]))
        assert [check["status"] for check in report["timeline"]] == ["same"] * recorded
    assert one.exit_code == 0 and f"{len(runtime.store.events(ids[0]))} events reproduced exactly" in one.stdout
    assert "  2  ok      route           route     password_reset (confidence" in one.stdout


def test_a_changed_policy_shows_as_the_first_divergence(runner, settings, tmp_path):
    run_id = runner.submit(TICKETS[0]).run_id
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text("version: 1\ntools:\n  password_reset: {decision: deny}\n")
    result = invoke(cli_env(settings, CASEPLAN__POLICIES__FILES=f"[{stricter}]"), "replay", run_id)
    assert result.exit_code == 1, result.output
    assert f"first divergence: run {run_id}: recorded event 4 (policy_decision) differs" in result.stdout
    assert 'payload.decision: recorded "allow" | replayed "deny"' in result.stdout
    assert "    4  DIFFERS policy_decision" in result.stdout
    assert invoke(cli_env(settings), "replay", run_id).exit_code == 0  # the record itself is fine


def custom_runtime(root, database_env, embedder, local_model, **env):
    built = Runtime.build(make_settings(root / "data", **database_env, **env), embedder=embedder, local_model=local_model)
    seed_demo(built.sandbox)
    return built


def test_a_run_that_waited_for_approval_replays_with_the_recorded_answer(tmp_path, database_env, embedder, local_model):
    policy = tmp_path / "approve.yaml"
    policy.write_text(
        "version: 1\nrules:\n  - {id: reset-approval, tools: [password_reset], decision: needs_approval, reason: a person confirms}\n"
    )
    runtime = custom_runtime(tmp_path, database_env, embedder, local_model, CASEPLAN__POLICIES__FILES=f"[{policy}]")
    runner, env = Runner(runtime), cli_env(runtime.settings, CASEPLAN__POLICIES__FILES=f"[{policy}]")
    approved, rejected = runner.submit(TICKETS[0]), runner.submit(TICKETS[0])
    assert approved.status == rejected.status == "waiting_approval"
    [pending, _] = runtime.store.approvals(status="pending")
    assert pending.run_id == approved.run_id and [s["step_id"] for s in pending.steps] == ["make_password"]

    waiting = invoke(env, "replay", approved.run_id)
    assert waiting.exit_code == 2 and "is still in progress (status waiting_approval)" in waiting.stderr

    assert runner.answer_approval(approved.run_id, True, "agent@example.com").status == "completed"
    assert runner.answer_approval(rejected.run_id, False, "agent@example.com", "not verified").status == "escalated"
    [decided] = runtime.store.approvals(run_id=approved.run_id)
    assert (decided.status, decided.decided_by) == ("approved", "agent@example.com")
    for run_id in (approved.run_id, rejected.run_id):
        result = invoke(env, "replay", run_id)
        assert result.exit_code == 0 and "reproduced exactly" in result.stdout, result.stdout
        assert " ok      approval        approval" in result.stdout
    runtime.engine.dispose()


def test_a_run_whose_model_was_unavailable_replays_exactly(tmp_path, database_env, embedder, monkeypatch):
    runtime = Runtime.build(
        make_settings(tmp_path / "data", CASEPLAN__LOCAL_MODEL__PATH=str(tmp_path / "missing.gguf"), **database_env), embedder=embedder
    )
    seed_demo(runtime.sandbox)
    result = Runner(runtime).submit(CLOSE_TICKET)  # its plan asks the local model for a slot
    assert result.status == "escalated" and result.escalation["reason"] == "model_unavailable"
    with world_out_of_reach(monkeypatch, runtime.registry) as reached:
        report = Replayer(runtime, AuditSource.open(runtime.settings)).replay(result.run_id)
    assert reached == []
    assert report.status == "reproduced", report.message
    runtime.engine.dispose()


FLAKY_TEMPLATE = """
name: flaky_note
version: 1
description: one side effect that fails transiently before it succeeds
slots:
  ticket_id: {type: ticket_id, sources: [ticket.ticket_id]}
steps:
  - id: note
    tool: record_note
    args: {value: $slots.ticket_id}
reply: {kind: text, text: "noted {steps.note.output.value}"}
"""


class TiebreakRouter:
    """Decides as the real router does when the model breaks a tie: the decision carries the call."""

    def route(self, ticket):
        call = ModelCall(purpose="route", model_id="tiebreak-test", output={"template": "flaky_note"}, prompt_tokens=42)
        return RouteDecision(template="flaky_note", confidence=0.7, method="model_tiebreak", model_calls=[call])


def test_model_tiebreaks_and_retried_side_effects_replay_exactly(tmp_path, database_env, monkeypatch):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "flaky_note.yaml").write_text(FLAKY_TEMPLATE)
    policy = tmp_path / "allow.yaml"
    policy.write_text("version: 1\ntools:\n  record_note: {decision: allow}\n")
    settings = make_settings(
        tmp_path / "data",
        CASEPLAN__CATALOGUE__PATHS=f"[{templates}]",
        CASEPLAN__POLICIES__FILES=f"[{policy}]",
        CASEPLAN__EXECUTOR__BACKOFF_BASE_S="0",
        **database_env,
    )
    flaky = CountingSideEffect(failures=[ToolError("transient", "busy"), ToolError("transient", "busy")])
    registry = registry_from_settings(settings)
    registry.register(flaky)
    runtime = Runtime.build(settings, registry=registry, router=TiebreakRouter())
    result = Runner(runtime).submit(TICKETS[0])
    assert result.status == "completed" and result.steps[0]["attempts"] == 3 and len(flaky.calls) == 3
    assert [e.kind for e in runtime.store.events(result.run_id)][:3] == ["intake", "model_call", "route"]

    with world_out_of_reach(monkeypatch, runtime.registry) as reached:
        report = Replayer(runtime, AuditSource.open(settings)).replay(result.run_id)
    assert reached == []
    assert report.status == "reproduced", report.message


def test_a_crash_resumed_run_replays_exactly(tmp_path, monkeypatch):
    from tests.crash_support import TICKET, SimulatedCrash, build

    runtime = build(tmp_path)
    with pytest.raises(SimulatedCrash):
        Runner(runtime).submit(TICKET, run_id="run_crash_replay")
    assert Runner(runtime).resume("run_crash_replay").status == "completed"
    with world_out_of_reach(monkeypatch, runtime.registry) as reached:
        report = Replayer(runtime, AuditSource.open(runtime.settings)).replay("run_crash_replay")
    assert reached == []
    assert report.status == "reproduced", report.message
    assert any("interrupted (crash) and resumed" in note for note in report.notes)


def recorded_route(runtime, run_id):
    return next(e.payload for e in runtime.store.events(run_id) if e.kind == "route")


@pytest.mark.slow
def test_live_replay_names_the_runs_a_new_threshold_or_model_changes(runner, runtime, settings, embedder, local_model):
    tickets = [ticket for ticket in TICKETS if ticket is not CLOSE_TICKET] + [TIEBREAK_TICKET]  # the close ticket's slot call is slow here
    ids = [runner.submit(ticket).run_id for ticket in tickets]
    source = AuditSource.open(settings)
    same = Replayer(runtime, source, live=True).replay_many(RunQuery())
    assert (same.ok, same.failed) == (len(ids), 0), [r.message for r in same.reports if not r.ok]

    def live_with(**env):
        changed = Runtime.build(make_settings(settings.data_path, **cli_env(settings), **env), embedder=embedder, local_model=local_model)
        summary = Replayer(changed, source, live=True).replay_many(RunQuery())
        return {report.run_id: report for report in summary.reports if report.status == "changed"}

    threshold = 0.8
    stricter = live_with(CASEPLAN__ROUTER__MIN_SIMILARITY=str(threshold))
    routed = [run_id for run_id in ids if any(e.kind == "route" for e in runtime.store.events(run_id))]  # not stopped at intake
    best = {run_id: (recorded_route(runtime, run_id)["candidates"] or [{"score": 0.0}])[0]["score"] for run_id in routed}
    expected = {run_id for run_id in routed if best[run_id] < threshold}
    assert 0 < len(expected) < len(routed)
    assert set(stricter) == expected
    for run_id, report in stricter.items():
        if best[run_id] >= 0.55:  # routed before, out of scope now
            route = next(c for c in report.changes if c.decision == "route")
            assert route.replayed == [{"template": None, "reason": "out_of_scope"}]

    # Without the model, a tie goes to the nearest template: only runs where the model chose otherwise change.
    without_model = live_with(CASEPLAN__ROUTER__USE_MODEL_TIEBREAK="false")
    overruled = {
        run_id
        for run_id in routed
        if recorded_route(runtime, run_id)["method"] == "model_tiebreak"
        and recorded_route(runtime, run_id)["template"] != recorded_route(runtime, run_id)["candidates"][0]["template"]
    }
    assert overruled, "the local model agreed with the nearest template on the tie ticket; pick a ticket where it does not"
    assert set(without_model) == overruled
    assert all(report.changes[0].decision == "route" for report in without_model.values())

    result = invoke(cli_env(settings, CASEPLAN__ROUTER__MIN_SIMILARITY=str(threshold)), "replay", "--all", "--live")
    assert result.exit_code == 1
    assert f"{len(ids) - len(expected)} unchanged, {len(expected)} changed" in result.stdout
    assert all(f"live replay of {run_id}: changed" in result.stdout for run_id in expected)
