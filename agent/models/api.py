"""The API model: an OpenAI-compatible chat-completions endpoint for tickets the local path
cannot settle (low routing confidence, a local answer that failed validation twice).

Structured output is a JSON schema derived from a Pydantic model; an answer that is not JSON
or violates the schema is re-asked with the validation error, a bounded number of times.
Transient failures (429, 5xx, timeouts, connection errors) are retried with exponential
backoff, honouring `Retry-After`. Every ticket has a token and cost budget. When the endpoint
cannot answer or the budget is spent, the caller escalates to a person with the typed reason
carried by the exception (`model_unavailable`, `budget_exceeded`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, Field, ValidationError

from agent.models.calls import ModelCall
from agent.settings import ApiModelSettings
from policies.pii import PII_KINDS, mask_text
from tools.base import first_problem
from tools.http import ResponseRefused, fetch, retry_after_s
from tools.http_deadline import bounded_client

log = structlog.get_logger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
CHARS_PER_TOKEN = 4  # a prompt's size in tokens, estimated before the call; the answer's usage is what is charged


class ApiModelError(RuntimeError):
    """The API model gave no usable answer; `reason` is the escalation reason to record."""

    reason = "model_unavailable"

    def __init__(self, message: str, calls: list[ModelCall] | None = None) -> None:
        super().__init__(message)
        self.calls = calls or []


class ApiUnavailable(ApiModelError):
    reason = "model_unavailable"


class BudgetExceeded(ApiModelError):
    reason = "budget_exceeded"


@dataclass
class TicketBudget:
    """What one ticket may still spend on the API model."""

    tokens: int
    cost_usd: float
    spent_tokens: int = 0
    spent_usd: float = 0.0
    calls: list[ModelCall] = field(default_factory=list)

    def check(self, expected_tokens: int) -> None:
        """Refuse a call that would take the ticket over its budget (`expected_tokens`: the
        prompt, estimated, plus the completion limit)."""
        if self.spent_tokens + expected_tokens > self.tokens or self.spent_usd >= self.cost_usd:
            raise BudgetExceeded(
                f"ticket budget: {self.spent_tokens} of {self.tokens} tokens and ${self.spent_usd:.4f} of ${self.cost_usd:.4f} spent;"
                f" the next call needs about {expected_tokens} tokens",
                list(self.calls),
            )

    def charge(self, call: ModelCall) -> None:
        """Book a call; one that went over the budget (a longer prompt than estimated) is paid
        for and recorded, but its answer is not used: the budget is a cap, not a target."""
        self.spent_tokens += call.prompt_tokens + call.completion_tokens
        self.spent_usd += call.cost_usd
        self.calls.append(call)
        if self.spent_tokens > self.tokens or self.spent_usd > self.cost_usd:
            raise BudgetExceeded(
                f"ticket budget exceeded by the last call: {self.spent_tokens} of {self.tokens} tokens, ${self.spent_usd:.4f} of ${self.cost_usd:.4f}",
                list(self.calls),
            )


class _Usage(BaseModel):
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message


class _Completion(BaseModel):
    """The parts of an OpenAI-style chat completion caseplan reads, checked: token counts feed
    the budget and the cost, and the model id is stored."""

    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None
    model: str | None = Field(None, max_length=200)


class ApiModel:
    """OpenAI-compatible chat completions over httpx; one instance per process is enough."""

    MAX_USER_CHARS = 6000  # cut after masking: a value cut in half first would no longer be recognised as PII

    def __init__(
        self,
        settings: ApiModelSettings,
        *,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        env: dict[str, str] | None = None,
        pii_kinds: Iterable[str] = PII_KINDS,
    ) -> None:
        if not settings.base_url:
            raise ValueError("api_model.base_url is not set")
        self.settings = settings
        self.sleep = sleep
        key = (env if env is not None else os.environ).get(settings.api_key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = client or bounded_client(base_url=settings.base_url.rstrip("/"), timeout=settings.timeout_s, headers=headers)
        self.model_id = settings.model
        self.pii_kinds = tuple(pii_kinds)  # masked before anything leaves for the third party

    def budget(self) -> TicketBudget:
        return TicketBudget(self.settings.ticket_token_budget, self.settings.ticket_cost_budget_usd)

    def complete(self, purpose: str, system: str, user: str, output: type[BaseModel], budget: TicketBudget) -> ModelCall:
        """A validated structured answer (`.output` is the model's dict), or ApiModelError."""
        schema = output.model_json_schema()
        messages = [{"role": "system", "content": system}, {"role": "user", "content": mask_text(user, self.pii_kinds)[: self.MAX_USER_CHARS]}]
        for attempt in range(self.settings.max_reasks + 1):
            budget.check(sum(len(message["content"]) for message in messages) // CHARS_PER_TOKEN + self.settings.max_tokens)
            try:
                call, text = self._post(purpose, messages, schema, output.__name__)
            except ApiUnavailable as exc:  # the calls already paid for stay on the record
                raise ApiUnavailable(str(exc), list(budget.calls)) from None
            budget.charge(call)
            try:
                parsed = output.model_validate_json(text)
            except ValidationError as exc:
                problem = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in exc.errors())[:500]
                call.error = f"answer {attempt + 1} rejected: {problem}"
                log.info("api answer rejected, re-asking", purpose=purpose, attempt=attempt + 1, problem=problem)
                messages += [
                    {"role": "assistant", "content": text[:2000]},
                    {"role": "user", "content": f"That answer is invalid ({problem}). Answer again with JSON matching the schema."},
                ]
                continue
            call.output = parsed.model_dump(mode="json")
            return call
        raise ApiUnavailable(f"{self.model_id} gave no valid answer in {self.settings.max_reasks + 1} attempts", list(budget.calls))

    def _post(self, purpose: str, messages: list[dict[str, str]], schema: dict[str, Any], name: str) -> tuple[ModelCall, str]:
        if self.settings.response_format == "json_schema":
            response_format = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
        else:
            response_format = {"type": "json_object", "schema": schema}
        params = {"model": self.settings.model, "temperature": 0.0, "max_tokens": self.settings.max_tokens}
        body = {**params, "messages": messages, "response_format": response_format}
        problem = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            started = time.perf_counter()
            wait = min(self.settings.backoff_base_s * 2 ** (attempt - 1), self.settings.max_wait_s)
            try:
                response = fetch(self.client, "POST", "/chat/completions", deadline_s=self.settings.timeout_s, json=body)
            except httpx.TimeoutException:
                problem = f"timed out after {self.settings.timeout_s}s"
            except httpx.TransportError as exc:
                problem = f"cannot reach {self.settings.base_url}: {type(exc).__name__}"
            except httpx.DecodingError:
                raise ApiUnavailable(f"{self.model_id}: the response body could not be decoded") from None
            except ResponseRefused as exc:
                if not exc.transient:
                    raise ApiUnavailable(f"{self.model_id}: {exc}") from None
                problem = str(exc)
            else:
                latency = (time.perf_counter() - started) * 1000
                if response.status_code == 200:
                    return self._call(purpose, params, response, latency)
                problem = f"HTTP {response.status_code}"
                if response.status_code not in RETRYABLE_STATUS:
                    raise ApiUnavailable(f"{self.model_id}: {problem} {response.text[:200]!r}")
                advised = retry_after_s(response)
                if advised is not None:
                    if advised > self.settings.max_wait_s:
                        raise ApiUnavailable(f"{self.model_id}: {problem}, Retry-After {advised:.0f}s exceeds {self.settings.max_wait_s}s")
                    wait = advised
            log.info("api call failed", attempt=attempt, problem=problem, retry_in_s=wait)
            if attempt < self.settings.max_attempts:
                self.sleep(wait)
        raise ApiUnavailable(f"{self.model_id}: {problem} after {self.settings.max_attempts} attempts")

    def _call(self, purpose: str, params: dict[str, Any], response: httpx.Response, latency: float) -> tuple[ModelCall, str]:
        try:
            completion = _Completion.model_validate_json(response.content)
        except ValidationError as exc:
            raise ApiUnavailable(f"{self.model_id}: HTTP 200 that is not a chat completion ({first_problem(exc)})") from None
        text = completion.choices[0].message.content or ""
        usage = completion.usage or _Usage()
        prompt, completion_tokens = usage.prompt_tokens, usage.completion_tokens
        cost = prompt / 1000 * self.settings.usd_per_1k_prompt_tokens + completion_tokens / 1000 * self.settings.usd_per_1k_completion_tokens
        call = ModelCall(
            purpose=purpose,
            model_id=completion.model or self.model_id,
            params=params,
            prompt_tokens=prompt,
            completion_tokens=completion_tokens,
            latency_ms=round(latency, 2),
            cost_usd=round(cost, 6),
        )
        return call, text
