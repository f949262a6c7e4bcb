"""Retries in one place: exponential backoff with jitter, `Retry-After` honoured, and only
for transient errors. The executor retries tool calls with it; webhook deliveries, which
happen outside plans, use the same loop."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, Field

from tools.base import ToolError

ResultT = TypeVar("ResultT")


class RetryPolicy(BaseModel):
    max_attempts: int = Field(3, ge=1, le=10)
    backoff_base_s: float = Field(0.05, ge=0)
    backoff_max_s: float = Field(2.0, ge=0)
    retry_after_max_s: float = Field(30.0, ge=0)


def backoff_delay(attempt: int, policy: RetryPolicy, retry_after: float | None = None) -> float:
    """Delay before attempt `attempt + 1`: the server's Retry-After when given (capped),
    otherwise full-jitter exponential backoff."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.retry_after_max_s)
    ceiling = min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def run_with_retries(
    call: Callable[[int], ResultT],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[ResultT, int]:
    """Call `call(attempt)` until it succeeds, fails for good, or attempts run out.

    Returns (result, attempts). Raises the last ToolError, with `.attempts` set.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return call(attempt), attempt
        except ToolError as exc:
            exc.attempts = attempt  # type: ignore[attr-defined]
            if exc.kind != "transient" or attempt >= policy.max_attempts:
                raise
            if exc.retry_after is not None and exc.retry_after > policy.retry_after_max_s:
                # Waiting the cap and asking again would hold a worker for a call the server has
                # said it will refuse: give up now, and the run escalates with the reason.
                exc.message = f"{exc.message} (the service asks to wait {exc.retry_after:g}s, more than the {policy.retry_after_max_s:g}s a retry waits)"
                exc.args = (exc.message,)
                raise
            sleep(backoff_delay(attempt, policy, exc.retry_after))
