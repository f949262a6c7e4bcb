"""Small real tools for tests: each counts its calls so tests can see what reached the 'remote'."""

from __future__ import annotations

import time

from plans.models import Plan, ReplySpec, Step
from tools.base import Tool, ToolContext, ToolError, ToolModel


def make_plan(*steps: Step) -> Plan:
    """A plan of these steps, as the executor receives it after the check."""
    return Plan(
        template="test",
        template_version=1,
        catalogue_version="test",
        ticket_id=None,
        slots={},
        steps=steps,
        reply=ReplySpec(kind="none"),
    )


class EchoIn(ToolModel):
    value: str
    count: int = 1


class EchoOut(ToolModel):
    value: str
    calls: int


class CountingSideEffect(Tool[EchoIn, EchoOut]):
    """A side-effecting tool; `failures` are raised (in order) before it succeeds."""

    name = "record_note"
    description = "test tool with a side effect"
    input_model = EchoIn
    output_model = EchoOut
    side_effects = True

    def __init__(self, failures: list[ToolError] | None = None, delay_s: float = 0.0) -> None:
        self.failures = list(failures or [])
        self.delay_s = delay_s
        self.calls: list[str] = []

    def invoke(self, args: EchoIn, ctx: ToolContext) -> EchoOut:
        self.calls.append(ctx.idempotency_key)
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.failures:
            raise self.failures.pop(0)
        return EchoOut(value=args.value, calls=len(self.calls))


class Reader(Tool[EchoIn, EchoOut]):
    name = "read_value"
    description = "read-only test tool"
    input_model = EchoIn
    output_model = EchoOut
    side_effects = False

    def __init__(self) -> None:
        self.calls = 0

    def invoke(self, args: EchoIn, ctx: ToolContext) -> EchoOut:
        self.calls += 1
        return EchoOut(value=args.value.upper(), calls=self.calls)


class Crashing(Tool[EchoIn, EchoOut]):
    name = "buggy"
    description = "raises an unexpected exception"
    input_model = EchoIn
    output_model = EchoOut
    side_effects = False

    def invoke(self, args: EchoIn, ctx: ToolContext) -> EchoOut:
        raise ZeroDivisionError("division by zero")
