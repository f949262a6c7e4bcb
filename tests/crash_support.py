"""A runtime whose plan crashes the process right after a real side effect (password reset).

Used in-process (a BaseException escapes the graph) and in a subprocess (SIGKILL), to show a
resumed run does not repeat the side effect.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from agent.db import make_engine
from agent.routing import RouteDecision
from agent.runtime import Runtime
from agent.tickets import Ticket
from agent.tooling import build_registry, open_knowledge_index
from tests.conftest import make_settings
from tests.tooling_doubles import EchoIn, EchoOut
from tools.base import Tool, ToolContext
from tools.sandbox.seed import seed_demo
from tools.sandbox.store import SandboxStore

TEMPLATE = """
name: reset_then_crash
version: 1
description: password reset followed by a step that crashes once
slots:
  email: {type: email, sources: [ticket.requester_email]}
  ticket_id: {type: ticket_id, sources: [ticket.ticket_id]}
steps:
  - id: lookup
    tool: account_lookup
    args: {email: $slots.email}
  - id: verify
    tool: verify_identity
    args: {user_id: $steps.lookup.output.user_id, requester_email: $slots.email}
  - id: reset
    tool: password_reset
    args: {user_id: $steps.lookup.output.user_id, verification_id: $steps.verify.output.verification_id}
  - id: after_reset
    tool: crash_once
    args: {value: done}
  - id: update
    tool: ticket_update
    args: {ticket_id: $slots.ticket_id, status: pending}
reply: {kind: text, text: "done"}
"""

TICKET = Ticket(text="please reset my password", requester_email="jane@example.com", ticket_id="1003")


class SimulatedCrash(BaseException):
    """Not an Exception: nothing in caseplan may swallow it, like a power cut."""


class CrashOnce(Tool[EchoIn, EchoOut]):
    name = "crash_once"
    description = "crashes the first time it runs (marker file absent)"
    input_model = EchoIn
    output_model = EchoOut
    side_effects = False

    def __init__(self, marker: Path, hard: bool) -> None:
        self.marker = marker
        self.hard = hard

    def invoke(self, args: EchoIn, ctx: ToolContext) -> EchoOut:
        if not self.marker.exists():
            self.marker.write_text(ctx.run_id)
            if self.hard:
                os.kill(os.getpid(), signal.SIGKILL)
            raise SimulatedCrash()
        return EchoOut(value=args.value, calls=1)


class FixedRouter:
    def route(self, ticket: Ticket) -> RouteDecision:
        return RouteDecision(template="reset_then_crash", confidence=1.0, method="rule")


def build(root: Path, hard: bool = False) -> Runtime:
    templates = root / "templates"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "reset_then_crash.yaml").write_text(TEMPLATE)
    policy = root / "allow_crash.yaml"
    policy.write_text(  # the packaged rule keeps resets to their own workflow; this one is a reset workflow too
        "version: 1\ntools:\n  crash_once: {decision: allow}\nrules:\n"
        "  - {id: reset-only-in-its-workflow, tools: [password_reset], when: {templates_not: [password_reset, reset_then_crash]},"
        " decision: deny, reason: resets run only in reset workflows}\n"
    )
    settings = make_settings(
        root / "data", CASEPLAN__CATALOGUE__PATHS=f"[{templates}]", CASEPLAN__POLICIES__FILES=f"[{policy}]"
    )
    engine = make_engine(settings.database_url)
    sandbox = SandboxStore(make_engine(settings.sandbox_url))
    registry = build_registry(engine, sandbox, open_knowledge_index(settings))
    registry.register(CrashOnce(root / "crashed.marker", hard))
    runtime = Runtime.build(settings, registry=registry, router=FixedRouter())
    seed_demo(runtime.sandbox)
    return runtime


if __name__ == "__main__":
    from agent.runner import Runner

    Runner(build(Path(sys.argv[1]), hard=True)).submit(TICKET, run_id=sys.argv[2])
