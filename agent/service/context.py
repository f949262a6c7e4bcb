"""What every request handler needs, built once per app from the runtime."""

from __future__ import annotations

from dataclasses import dataclass

from agent.audit import AuditSource
from agent.record import RecordProtection
from agent.runner import Runner
from agent.runtime import Runtime
from agent.service.desk import EscalationDesk
from agent.service.keys import KeyStore
from agent.service.metrics import Metrics
from agent.service.queue import WorkQueue
from agent.service.ratelimit import RateLimiter


@dataclass
class ServiceContext:
    runtime: Runtime
    runner: Runner
    keys: KeyStore
    queue: WorkQueue
    desk: EscalationDesk
    limiter: RateLimiter
    metrics: Metrics
    audit: AuditSource

    @classmethod
    def build(cls, runtime: Runtime) -> ServiceContext:
        service = runtime.settings.service
        queue = WorkQueue(runtime.engine, service.lease_s)
        return cls(
            runtime=runtime,
            runner=Runner(runtime),
            keys=KeyStore(runtime.engine),
            queue=queue,
            desk=EscalationDesk(runtime),
            limiter=RateLimiter(service.rate_limit_per_s, service.rate_limit_burst),
            metrics=Metrics(queue.depth),
            audit=AuditSource(runtime.engine, RecordProtection.from_settings(runtime.settings, writer=False)),
        )
