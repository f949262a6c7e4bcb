"""Routing + planning cost per ticket, and caseplan against a ReAct tool-calling agent.

On the same Bitext dev tickets (a seeded sample of N), with the same local GGUF model and the
same tools (the registry's contracts: names, descriptions, input schemas):

- caseplan: the router (example bank from train.csv, calibrated thresholds, local-model
  tiebreak) chooses a template and the planner fills and compiles it. Timed: route + plan.
- baseline: LangGraph's prebuilt ReAct agent (`langgraph.prebuilt.create_react_agent`) whose
  chat model is the same llama.cpp model asked, under a JSON schema, for the next tool call.

The *action* of a ticket is the tool that carries its decision: password_reset, knowledge_search
or escalate_to_human (ticket_lookup / ticket_update for the ticket templates). An action is
correct when it is the gold template's action. Neither side executes tools here: caseplan's plan
is compiled, the baseline's tool calls are recorded and answered with a fixed acknowledgement,
so both are measured on the decision alone.

    python -m bench.routing [--tickets 200] [--out bench/results/routing.json]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import StructuredTool

from agent.models.tasks import LocalRouteModel
from agent.routing import ESCALATE_TEMPLATE, NearestNeighbourRouter
from agent.routing_eval import load_dataset
from agent.runtime import Runtime
from agent.settings import REPO_ROOT, RouterSettings, _read_yaml, load_settings
from agent.tickets import Ticket
from bench.results import write_result

ACTIONS = {
    "password_reset": "password_reset",
    "knowledge_answer": "knowledge_search",
    "escalate": "escalate_to_human",
    "ticket_status": "ticket_lookup",
    "close_ticket": "ticket_update",
}
AGENT_TOOLS = ["password_reset", "knowledge_search", "escalate_to_human", "ticket_lookup", "ticket_update"]
AGENT_SYSTEM = (
    "You are a customer-support agent. Handle the customer's ticket by calling one of the tools. "
    "Call escalate_to_human when no tool fits. After a tool result, answer with 'final'."
)


class LocalToolCaller(BaseChatModel):
    """The local llama.cpp model as a LangChain chat model that emits one tool call per turn."""

    model: Any
    tools: list[dict[str, str]] = []
    usage: dict[str, int] = {"prompt": 0, "completion": 0, "calls": 0}

    @property
    def _llm_type(self) -> str:
        return "caseplan-local-llama"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> LocalToolCaller:
        specs = [{"name": t.name, "description": t.description} for t in tools]
        return self.model_copy(update={"tools": specs, "usage": self.usage})

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        names = [t["name"] for t in self.tools]
        menu = "\n".join(f"- {t['name']}: {t['description']}" for t in self.tools)
        history = "\n".join(f"{m.type}: {m.content}" for m in messages if m.content)[-3000:]
        schema = {
            "type": "object",
            "properties": {
                "tool": {"type": "string", "enum": [*names, "final"]},
                "argument": {"type": "string", "maxLength": 120},
            },
            "required": ["tool", "argument"],
            "additionalProperties": False,
        }
        call = self.model.complete_json("react", AGENT_SYSTEM, f"Tools:\n{menu}\n\nConversation:\n{history}", schema, 64)
        self.usage["prompt"] += call.prompt_tokens
        self.usage["completion"] += call.completion_tokens
        self.usage["calls"] += 1
        output = call.output if isinstance(call.output, dict) else {}
        tool = output.get("tool")
        if tool in names and not isinstance(messages[-1], ToolMessage):
            message = AIMessage(content="", tool_calls=[{"name": tool, "args": {"request": output.get("argument", "")}, "id": uuid.uuid4().hex[:8]}])
        else:
            message = AIMessage(content=str(output.get("argument", "")))
        return ChatResult(generations=[ChatGeneration(message=message)])


def agent_tools(runtime: Runtime, called: list[str]) -> list[StructuredTool]:
    """The registry's tools by name and description; calls are recorded and acknowledged."""

    def make(name: str) -> StructuredTool:
        def record(request: str = "") -> str:
            called.append(name)
            return f"{name} accepted the request"

        return StructuredTool.from_function(record, name=name, description=runtime.registry.get(name).description)

    return [make(name) for name in AGENT_TOOLS]


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


def run(tickets_n: int, out: Path) -> dict[str, Any]:
    from langgraph.prebuilt import create_react_agent

    data = Path(tempfile.mkdtemp(prefix="caseplan-bench-routing-"))
    settings = load_settings(env={"CASEPLAN_DATA_DIR": str(data)})
    runtime = Runtime.build(settings)
    router_settings = RouterSettings.model_validate(
        {**settings.router.model_dump(), **_read_yaml(REPO_ROOT / "configs" / "bitext.yaml")["router"]}
    )
    shared_cache = Path(os.environ.get("CASEPLAN_BENCH_CACHE", str(Path.home() / ".cache" / "caseplan")))
    router = NearestNeighbourRouter(runtime.catalogue, runtime.embedder, router_settings, LocalRouteModel(runtime.local_model), shared_cache)
    tickets = random.Random(0).sample(load_dataset("bitext", "dev"), tickets_n)
    router.route(Ticket(text="warm-up"))  # builds (or loads) the bank before timing
    runtime.local_model.load()

    caseplan = {"correct": 0, "tokens": 0, "latency": [], "route_ms": [], "plan_ms": []}
    for item in tickets:
        ticket = Ticket(text=item.text, requester_email="customer@example.com", ticket_id="1001")  # as the platform sends it
        started = time.perf_counter()
        decision = router.route(ticket)
        routed = time.perf_counter()
        template = decision.template or ESCALATE_TEMPLATE
        context = {"reason": decision.reason or "customer_request", "summary": item.text[:500]}
        outcome = runtime.planner.plan(template, ticket, context)
        if outcome.plan is None:  # a plan that cannot be filled escalates, as the graph does
            template = ESCALATE_TEMPLATE
            outcome = runtime.planner.plan(template, ticket, {"reason": outcome.reason or "missing_information", "summary": item.text[:500]})
        finished = time.perf_counter()
        caseplan["route_ms"].append((routed - started) * 1000)
        caseplan["plan_ms"].append((finished - routed) * 1000)
        caseplan["latency"].append((finished - started) * 1000)
        caseplan["tokens"] += sum(c.prompt_tokens + c.completion_tokens for c in [*decision.model_calls, *outcome.fill.model_calls])
        caseplan["correct"] += ACTIONS[template] == ACTIONS[item.gold]

    chat = LocalToolCaller(model=runtime.local_model)
    baseline = {"correct": 0, "latency": [], "no_tool": 0}
    for item in tickets:
        called: list[str] = []
        agent = create_react_agent(chat, agent_tools(runtime, called))
        started = time.perf_counter()
        agent.invoke({"messages": [("user", item.text)]}, {"recursion_limit": 6})
        baseline["latency"].append((time.perf_counter() - started) * 1000)
        baseline["no_tool"] += not called
        baseline["correct"] += bool(called) and called[0] == ACTIONS[item.gold]

    n = len(tickets)
    ours = {
        "correct_action_rate": round(caseplan["correct"] / n, 4),
        "llm_tokens_per_ticket": round(caseplan["tokens"] / n, 2),
        "latency_ms_p50": percentile(caseplan["latency"], 50),
        "latency_ms_p95": percentile(caseplan["latency"], 95),
        "route_ms_p50": percentile(caseplan["route_ms"], 50),
        "plan_ms_p50": percentile(caseplan["plan_ms"], 50),
    }
    theirs = {
        "correct_action_rate": round(baseline["correct"] / n, 4),
        "llm_tokens_per_ticket": round((chat.usage["prompt"] + chat.usage["completion"]) / n, 2),
        "llm_calls_per_ticket": round(chat.usage["calls"] / n, 2),
        "latency_ms_p50": percentile(baseline["latency"], 50),
        "latency_ms_p95": percentile(baseline["latency"], 95),
        "tickets_without_a_tool_call": baseline["no_tool"],
    }
    result = {
        "benchmark": "routing",
        "tickets": n,
        "dataset": "bitext dev, random sample (seed 0)",
        "local_model": {"id": runtime.local_model.model_id, "gpu_offload": runtime.local_model.gpu_offload},
        "caseplan": ours,
        "react_baseline": theirs,
        "ratios": {
            "correct_action_rate_caseplan_over_react": round(ours["correct_action_rate"] / theirs["correct_action_rate"], 2)
            if theirs["correct_action_rate"]
            else None,
            "tokens_react_over_caseplan": round(theirs["llm_tokens_per_ticket"] / ours["llm_tokens_per_ticket"], 1)
            if ours["llm_tokens_per_ticket"]
            else None,
            "latency_p50_react_over_caseplan": round(theirs["latency_ms_p50"] / ours["latency_ms_p50"], 1),
        },
        "target": {"routing_plus_planning_p50_ms": 300, "met": ours["latency_ms_p50"] <= 300},
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    write_result(out, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("bench/results/routing.json"))
    args = parser.parse_args()
    result = run(args.tickets, args.out)
    print({k: result[k] for k in ("tickets", "caseplan", "react_baseline", "ratios", "target")})


if __name__ == "__main__":
    main()
