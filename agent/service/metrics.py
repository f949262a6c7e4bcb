"""Prometheus metrics: runs by outcome and template, step and run latencies, model tokens,
HTTP requests, and the queue depth (read from the database at scrape time)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from agent.runner import RunResult

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _QueueDepth(Collector):
    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self.depth = depth

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("caseplan_queue_depth", "Runs in the work queue by state.", labels=["state"])
        for state, count in sorted(self.depth().items()):
            family.add_metric([state], count)
        yield family


class Metrics:
    """One registry per app, so several apps in one process (tests) do not collide."""

    def __init__(self, queue_depth: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter("caseplan_runs", "Runs handled by workers, by outcome and template.", ["outcome", "template"], registry=self.registry)
        self.run_seconds = Histogram("caseplan_run_seconds", "Time a worker spent driving a run.", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.step_seconds = Histogram("caseplan_step_seconds", "Tool step latency.", ["tool"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.model_tokens = Counter("caseplan_model_tokens", "Model tokens used by runs.", ["kind"], registry=self.registry)
        self.requests = Counter("caseplan_http_requests", "HTTP requests by route and status.", ["method", "route", "status"], registry=self.registry)
        if queue_depth is not None:
            self.registry.register(_QueueDepth(queue_depth))

    def observe_run(self, result: RunResult, template: str | None, seconds: float, model_calls: Sequence[dict[str, Any]] = ()) -> None:
        self.runs.labels(result.status, template or "none").inc()
        self.run_seconds.observe(seconds)
        for step in result.steps:
            self.step_seconds.labels(step.get("tool", "?")).observe(float(step.get("duration_ms") or 0) / 1000)
        for call in model_calls:
            self.model_tokens.labels("prompt").inc(int(call.get("prompt_tokens") or 0))
            self.model_tokens.labels("completion").inc(int(call.get("completion_tokens") or 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
