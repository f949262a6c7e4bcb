"""From k runs per case to the report's numbers: pass^k, per-check pass rates, accuracy,
escalation precision/recall, latency, tokens and cost per ticket."""

from __future__ import annotations

from collections import defaultdict
from math import comb

import numpy as np
from pydantic import BaseModel

from agent.evals.cases import EvalCase
from agent.evals.runner import CaseRun


class CaseSummary(BaseModel):
    id: str
    runs: int
    passes: int
    pass_rate: float
    failed_checks: dict[str, str] = {}  # check name -> what was seen, from the first failing run
    tags: list[str] = []


class Metrics(BaseModel):
    cases: int
    runs: int
    k: int
    pass_hat: dict[str, float]  # "1".."k": probability that all j runs of a case pass (tau-bench pass^j)
    checks: dict[str, float]  # per check kind (template, route, slots, tool_calls, each criterion): pass rate
    template_accuracy: float | None = None
    route_accuracy: float | None = None
    slot_accuracy: float | None = None
    action_sequence_match: float | None = None
    escalation_precision: float | None = None
    escalation_recall: float | None = None
    latency_ms_p50: float
    latency_ms_p95: float
    tokens_per_ticket: float
    cost_usd_per_ticket: float


def pass_hat(successes: int, trials: int, j: int) -> float:
    """Unbiased estimate of the chance that j fresh runs all pass, from c of n passing (tau-bench)."""
    return comb(successes, j) / comb(trials, j) if trials >= j else 0.0


def _check_kind(name: str) -> str:
    """Slots count together, and a criterion counts under its name (not its argument)."""
    if name.startswith("slot:"):
        return "slots"
    return ":".join(name.split(":", 2)[:2]) if name.startswith("criterion:") else name


def _rate(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _escalation_pr(cases: dict[str, EvalCase], runs: list[CaseRun]) -> tuple[float | None, float | None]:
    """Escalation as a yes/no decision, judged at the level the case states (final plan, else route)."""
    tp = fp = fn = 0
    for run in runs:
        expect = cases[run.case_id].expect
        if expect.template is not None:
            wanted, got = expect.template == "escalate", run.observation.template == "escalate"
        elif expect.route is not None:
            wanted, got = expect.route == "escalate", run.observation.route == "escalate"
        else:
            continue
        tp += wanted and got
        fp += got and not wanted
        fn += wanted and not got
    precision = round(tp / (tp + fp), 4) if tp + fp else None
    recall = round(tp / (tp + fn), 4) if tp + fn else None
    return precision, recall


def summarise(cases: list[EvalCase], runs: list[CaseRun], k: int) -> tuple[Metrics, list[CaseSummary]]:
    by_id = {case.id: case for case in cases}
    per_case: dict[str, list[CaseRun]] = defaultdict(list)
    for run in runs:
        per_case[run.case_id].append(run)
    summaries = []
    for case in cases:
        mine = per_case.get(case.id, [])
        passes = sum(run.passed for run in mine)
        first_fail = next((run for run in mine if not run.passed), None)
        failed = {c.name: c.detail for c in first_fail.checks if not c.passed} if first_fail else {}
        summaries.append(
            CaseSummary(id=case.id, runs=len(mine), passes=passes, pass_rate=round(passes / len(mine), 4) if mine else 0.0, failed_checks=failed, tags=case.tags)
        )
    scored = [s for s in summaries if s.runs]
    hats = {
        str(j): round(float(np.mean([pass_hat(s.passes, s.runs, j) for s in scored])), 4) if scored else 0.0
        for j in range(1, k + 1)
    }
    by_kind: dict[str, list[bool]] = defaultdict(list)
    for run in runs:
        for check in run.checks:
            by_kind[_check_kind(check.name)].append(check.passed)
    latencies = [run.observation.latency_ms for run in runs] or [0.0]
    precision, recall = _escalation_pr(by_id, runs)
    metrics = Metrics(
        cases=len(scored),
        runs=len(runs),
        k=k,
        pass_hat=hats,
        checks={kind: _rate(values) for kind, values in sorted(by_kind.items())},
        template_accuracy=_rate(by_kind.get("template", [])),
        route_accuracy=_rate(by_kind.get("route", [])),
        slot_accuracy=_rate(by_kind.get("slots", [])),
        action_sequence_match=_rate(by_kind.get("action_sequence", [])),
        escalation_precision=precision,
        escalation_recall=recall,
        latency_ms_p50=round(float(np.percentile(latencies, 50)), 1),
        latency_ms_p95=round(float(np.percentile(latencies, 95)), 1),
        tokens_per_ticket=round(float(np.mean([run.observation.tokens for run in runs])) if runs else 0.0, 1),
        cost_usd_per_ticket=round(float(np.mean([run.observation.cost_usd for run in runs])) if runs else 0.0, 6),
    )
    return metrics, summaries
