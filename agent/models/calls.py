"""What every model call leaves in the record: which model, which file, what it cost."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ModelCall(BaseModel):
    purpose: str
    model_id: str
    model_sha256: str | None = None
    params: dict[str, Any] = {}
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    cost_usd: float = 0.0
    output: Any = None
    error: str | None = None
