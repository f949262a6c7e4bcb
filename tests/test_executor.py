"""The executor runs only checked plan steps, validates arguments, retries only transient errors
and never repeats a side effect."""

from __future__ import annotations

import threading

import pytest

from agent.db import make_engine
from agent.executor import ExecutionRefused, Executor, idempotency_key
from agent.record import SideEffectLedger
from agent.settings import ExecutorSettings
from plans.models import Step
from plans.validator import validate_plan
from tests.tooling_doubles import CountingSideEffect, Crashing, Reader, make_plan
from tools.base import ToolError
from tools.registry import ToolRegistry


@pytest.fixture
def ledger(tmp_path):
    return SideEffectLedger(make_engine(f"sqlite:///{tmp_path / 'record.db'}"))


def make_executor(ledger, *tools, **settings):
    config = ExecutorSettings(**{"backoff_base_s": 0.0, **settings})
    return Executor(ToolRegistry([Reader(), *tools]), ledger, config, sleep=lambda _: None)


READ = Step(id="read", tool="read_value", args={"value": "abc"})
WRITE = Step(id="write", tool="record_note", args={"value": "$steps.read.output.value"})


def test_runs_steps_in_order_and_resolves_references(ledger):
    tool = CountingSideEffect()
    executor = make_executor(ledger, tool)
    plan = make_plan(READ, WRITE)
    assert validate_plan(plan, executor.registry) == []
    first = executor.run_step(plan, plan.hash, READ, {}, "run1")
    second = executor.run_step(plan, plan.hash, WRITE, {"read": first.output}, "run1")
    assert first.status == second.status == "succeeded"
    assert second.args == {"value": "ABC"}
    assert second.output == {"value": "ABC", "calls": 1}
    assert second.idempotency_key == idempotency_key("run1", "write", {"value": "ABC"})


def test_refuses_a_step_that_is_not_in_the_validated_plan(ledger):
    tool = CountingSideEffect()
    executor = make_executor(ledger, tool)
    plan = make_plan(READ)
    smuggled = Step(id="write", tool="record_note", args={"value": "x"})
    with pytest.raises(ExecutionRefused, match="not in the validated plan"):
        executor.run_step(plan, plan.hash, smuggled, {}, "run1")
    altered = Step(id="read", tool="read_value", args={"value": "other"})
    with pytest.raises(ExecutionRefused, match="not in the validated plan"):
        executor.run_step(plan, plan.hash, altered, {}, "run1")
    assert tool.calls == []


def test_refuses_a_plan_changed_after_the_check(ledger):
    executor = make_executor(ledger, CountingSideEffect())
    checked = make_plan(READ)
    swapped = make_plan(Step(id="read", tool="read_value", args={"value": "evil"}))
    with pytest.raises(ExecutionRefused, match="changed after it was checked"):
        executor.run_step(swapped, checked.hash, swapped.steps[0], {}, "run1")


def test_argument_failing_its_schema_is_rejected_before_the_tool_runs(ledger):
    tool = CountingSideEffect()
    executor = make_executor(ledger, tool)
    bad = Step(id="write", tool="record_note", args={"value": "x", "count": "many"})
    extra = Step(id="extra", tool="record_note", args={"value": "x", "sudo": True})
    plan = make_plan(bad, extra)
    for step in plan.steps:
        result = executor.run_step(plan, plan.hash, step, {}, "run1")
        assert result.status == "rejected"
        assert result.error["kind"] == "invalid_arguments"
    assert "count" in executor.run_step(plan, plan.hash, bad, {}, "run1").error["message"]
    assert tool.calls == []


def test_reference_to_a_step_without_output_is_rejected(ledger):
    tool = CountingSideEffect()
    executor = make_executor(ledger, tool)
    plan = make_plan(READ, WRITE)
    result = executor.run_step(plan, plan.hash, WRITE, {}, "run1")
    assert result.status == "rejected" and "has no output yet" in result.error["message"]
    assert tool.calls == []


def test_transient_errors_are_retried_then_succeed(ledger):
    tool = CountingSideEffect([ToolError("transient", "503"), ToolError("transient", "503")])
    executor = make_executor(ledger, tool, max_attempts=3)
    plan = make_plan(Step(id="write", tool="record_note", args={"value": "x"}))
    result = executor.run_step(plan, plan.hash, plan.steps[0], {}, "run1")
    assert result.status == "succeeded" and result.attempts == 3
    assert len(set(tool.calls)) == 1, "every retry must reuse the same idempotency key"


def test_transient_errors_stop_after_max_attempts(ledger):
    tool = CountingSideEffect([ToolError("transient", "503")] * 5)
    executor = make_executor(ledger, tool, max_attempts=2)
    plan = make_plan(Step(id="write", tool="record_note", args={"value": "x"}))
    result = executor.run_step(plan, plan.hash, plan.steps[0], {}, "run1")
    assert result.status == "failed" and result.attempts == 2 and result.error["kind"] == "transient"


@pytest.mark.parametrize("kind", ["permanent", "denied"])
def test_permanent_and_denied_errors_are_not_retried(ledger, kind):
    tool = CountingSideEffect([ToolError(kind, "no", status_code=404)])
    executor = make_executor(ledger, tool, max_attempts=5)
    plan = make_plan(Step(id="write", tool="record_note", args={"value": "x"}))
    result = executor.run_step(plan, plan.hash, plan.steps[0], {}, "run1")
    assert result.status == "failed" and result.attempts == 1
    assert result.error == {"kind": kind, "message": "no", "status_code": 404}
    assert ledger.get(result.idempotency_key).status == "failed"


def test_step_timeout_is_a_transient_error(ledger):
    tool = CountingSideEffect(delay_s=0.5)
    executor = make_executor(ledger, tool, step_timeout_s=0.05, max_attempts=1)
    plan = make_plan(Step(id="write", tool="record_note", args={"value": "x"}))
    result = executor.run_step(plan, plan.hash, plan.steps[0], {}, "run1")
    assert result.status == "failed"
    assert result.error["kind"] == "transient" and "timed out" in result.error["message"]


@pytest.mark.parametrize("in_process", [True, False])
def test_in_process_tools_run_in_the_callers_thread_others_under_the_timeout_thread(ledger, in_process):
    tool = CountingSideEffect(delay_s=0.2)
    tool.in_process = in_process
    seen = []
    invoke = tool.invoke
    tool.invoke = lambda args, ctx: (seen.append(threading.get_ident()), invoke(args, ctx))[1]
    executor = make_executor(ledger, tool, step_timeout_s=0.05, max_attempts=1)
    plan = make_plan(Step(id="write", tool="record_note", args={"value": "x"}))
    result = executor.run_step(plan, plan.hash, plan.steps[0], {}, "run1")
    assert (seen == [threading.get_ident()]) is in_process
    # the timeout bounds only calls it can stop waiting for: an in-process call finishes
    assert result.status == ("succeeded" if in_process else "failed")


def test_a_crashing_tool_fails_the_step_not_the_process(ledger):
    executor = make_executor(ledger, Crashing())
    plan = make_plan(Step(id="boom", tool="buggy", args={"value": "x"}))
    result = executor.run_step(plan, plan.hash, plan.steps[0], {}, "run1")
    assert result.status == "failed" and "ZeroDivisionError" in result.error["message"]


def test_a_side_effect_is_never_repeated_for_the_same_run_step_and_arguments(ledger):
    tool = CountingSideEffect()
    executor = make_executor(ledger, tool)
    plan = make_plan(Step(id="write", tool="record_note", args={"value": "x"}))
    first = executor.run_step(plan, plan.hash, plan.steps[0], {}, "run1")
    again = executor.run_step(plan, plan.hash, plan.steps[0], {}, "run1")
    assert first.status == "succeeded" and again.status == "deduplicated"
    assert again.output == first.output
    assert len(tool.calls) == 1
    other_run = executor.run_step(plan, plan.hash, plan.steps[0], {}, "run2")
    assert other_run.status == "succeeded" and len(tool.calls) == 2
