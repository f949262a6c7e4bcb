"""The API model client against a mocked third-party endpoint (respx): success, 429 with
Retry-After, 500, timeout, invalid JSON re-ask, budget exhaustion, and how the router turns
each failure into a typed escalation reason."""

from __future__ import annotations

import json

import httpx
import pytest
import respx
from pydantic import BaseModel

from agent.models.api import ApiModel, ApiUnavailable, BudgetExceeded, TicketBudget
from agent.models.local import ModelUnavailable
from agent.models.tasks import ApiRouteModel
from agent.routing import Candidate, NearestNeighbourRouter, RouteDecision
from agent.settings import ApiModelSettings, RouterSettings
from agent.tickets import Ticket
from tools.http import retry_after_s

BASE = "https://api.example.test/v1"


class Answer(BaseModel):
    template: str


def completion(content: str, prompt: int = 100, completion_tokens: int = 5) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "model": "gpt-test",
            "choices": [{"message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens},
        },
    )


def client(sleeps: list[float] | None = None, **overrides) -> ApiModel:
    settings = ApiModelSettings(base_url=BASE, model="gpt-test", max_attempts=3, backoff_base_s=0.5, **overrides)
    return ApiModel(settings, sleep=(sleeps.append if sleeps is not None else lambda s: None), env={"CASEPLAN_API_KEY": "sk-test"})


@respx.mock
def test_success_records_tokens_cost_and_sends_the_schema():
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=completion('{"template": "password_reset"}'))
    model = client()
    budget = model.budget()
    call = model.complete("route", "sys", "user", Answer, budget)
    assert call.output == {"template": "password_reset"} and call.error is None
    assert (call.prompt_tokens, call.completion_tokens, call.model_id) == (100, 5, "gpt-test")
    assert call.cost_usd == pytest.approx(100 / 1000 * 0.00015 + 5 / 1000 * 0.0006)
    sent = json.loads(route.calls.last.request.content)
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["template"]
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-test"
    assert budget.spent_tokens == 105 and budget.calls == [call]


@respx.mock
def test_personal_data_is_masked_before_it_reaches_the_api():
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=completion('{"template": "password_reset"}'))
    ticket = "Reset my password, I am jane@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111"
    client().complete("route", "sys", ticket, Answer, TicketBudget(10_000, 1.0))
    sent = route.calls.last.request.content.decode()
    assert "jane@example.com" not in sent and "4111 1111 1111 1111" not in sent and "7946 0958" not in sent
    assert "Reset my password" in sent  # the request itself still reaches the model


@respx.mock
def test_429_waits_as_retry_after_says_then_succeeds():
    respx.post(f"{BASE}/chat/completions").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "7"}), completion('{"template": "escalate"}')]
    )
    sleeps: list[float] = []
    call = client(sleeps).complete("route", "s", "u", Answer, TicketBudget(4000, 1.0))
    assert sleeps == [7.0] and call.output == {"template": "escalate"}


@respx.mock
def test_retry_after_beyond_the_limit_is_unavailable_at_once():
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(429, headers={"Retry-After": "3600"}))
    with pytest.raises(ApiUnavailable, match="Retry-After") as caught:
        client([]).complete("route", "s", "u", Answer, TicketBudget(4000, 1.0))
    assert route.call_count == 1 and caught.value.reason == "model_unavailable"


@respx.mock
def test_500s_back_off_exponentially_then_give_up():
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(500, text="boom"))
    sleeps: list[float] = []
    with pytest.raises(ApiUnavailable, match="HTTP 500 after 3 attempts"):
        client(sleeps).complete("route", "s", "u", Answer, TicketBudget(4000, 1.0))
    assert route.call_count == 3 and sleeps == [0.5, 1.0]


@respx.mock
def test_client_error_is_not_retried():
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(401, json={"error": "bad key"}))
    with pytest.raises(ApiUnavailable, match="HTTP 401"):
        client([]).complete("route", "s", "u", Answer, TicketBudget(4000, 1.0))
    assert route.call_count == 1


@respx.mock
def test_timeout_is_retried_then_succeeds():
    respx.post(f"{BASE}/chat/completions").mock(side_effect=[httpx.ReadTimeout("slow"), completion('{"template": "escalate"}')])
    sleeps: list[float] = []
    assert client(sleeps).complete("route", "s", "u", Answer, TicketBudget(4000, 1.0)).output == {"template": "escalate"}
    assert sleeps == [0.5]


@respx.mock
def test_invalid_json_is_re_asked_with_the_problem():
    route = respx.post(f"{BASE}/chat/completions").mock(
        side_effect=[completion("Sure! The template is password_reset."), completion('{"template": "password_reset"}')]
    )
    budget = TicketBudget(4000, 1.0)
    call = client().complete("route", "s", "u", Answer, budget)
    assert call.output == {"template": "password_reset"}
    second = json.loads(route.calls[1].request.content)["messages"]
    assert second[-1]["role"] == "user" and "invalid" in second[-1]["content"]
    assert len(budget.calls) == 2 and budget.calls[0].error.startswith("answer 1 rejected")


@respx.mock
def test_schema_violations_twice_make_the_model_unavailable():
    respx.post(f"{BASE}/chat/completions").mock(return_value=completion('{"answer": 1}'))
    with pytest.raises(ApiUnavailable, match="no valid answer in 2 attempts") as caught:
        client(max_reasks=1).complete("route", "s", "u", Answer, TicketBudget(4000, 1.0))
    assert len(caught.value.calls) == 2


@respx.mock
def test_budget_exhaustion_stops_before_calling():
    route = respx.post(f"{BASE}/chat/completions").mock(return_value=completion("not json", prompt=3790, completion_tokens=10))
    with pytest.raises(BudgetExceeded) as caught:
        client(max_reasks=3, max_tokens=256).complete("route", "s", "u", Answer, TicketBudget(4000, 1.0))
    assert caught.value.reason == "budget_exceeded" and route.call_count == 1  # 3800 spent + 256 more would pass 4000
    with pytest.raises(BudgetExceeded):
        client().complete("route", "s", "u", Answer, TicketBudget(4000, 0.0))  # no money at all
    assert route.call_count == 1


def test_retry_after_parsing():
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "2.5"})) == 2.5
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    assert retry_after_s(httpx.Response(429)) is None


class LowConfidenceRouter(NearestNeighbourRouter):
    """The local part answers 'unsure' so the API path is what is under test."""

    def _local(self, ticket, vector):
        candidates = [Candidate(template="password_reset", score=0.6), Candidate(template="knowledge_answer", score=0.58)]
        return RouteDecision(template=None, confidence=0.6, method="nearest_neighbour", reason="low_confidence", candidates=candidates)

    def embed(self, ticket):
        return None


def api_router(catalogue, **overrides) -> LowConfidenceRouter:
    return LowConfidenceRouter(catalogue, None, RouterSettings(), None, None, api=ApiRouteModel(client(**overrides)))


@respx.mock
def test_router_escalates_with_the_api_failure_reason(runtime):
    ticket = Ticket(text="my login is broken somehow")
    respx.post(f"{BASE}/chat/completions").mock(return_value=httpx.Response(503))
    down = api_router(runtime.catalogue).route(ticket)
    assert (down.template, down.reason, down.method) == (None, "model_unavailable", "api")
    respx.post(f"{BASE}/chat/completions").mock(return_value=completion("{}", prompt=5000))
    broke = api_router(runtime.catalogue, ticket_token_budget=4000).route(ticket)
    assert broke.reason == "budget_exceeded" and broke.model_calls
    respx.post(f"{BASE}/chat/completions").mock(return_value=completion('{"template": "password_reset"}'))
    chosen = api_router(runtime.catalogue).route(ticket)
    assert (chosen.template, chosen.method, chosen.reason) == ("password_reset", "api", None)
    assert chosen.model_calls[0].model_id == "gpt-test"
    respx.post(f"{BASE}/chat/completions").mock(return_value=completion('{"template": "none"}'))
    assert api_router(runtime.catalogue).route(ticket).reason == "out_of_scope"
    respx.post(f"{BASE}/chat/completions").mock(return_value=completion('{"template": "close_ticket"}'))
    assert api_router(runtime.catalogue, max_reasks=0).route(ticket).reason == "model_unavailable"  # not a candidate


class TiedRouter(NearestNeighbourRouter):
    """Two templates tie, so the local model is asked to break the tie."""

    def _local(self, ticket, vector):
        return self._tiebreak(ticket, [Candidate(template="password_reset", score=0.6), Candidate(template="ticket_status", score=0.59)], {})

    def embed(self, ticket):
        return None


class DownTiebreaker:
    def choose(self, ticket, candidates):
        raise ModelUnavailable("model file not found: /gone.gguf")


@respx.mock
def test_a_tie_the_local_model_cannot_break_goes_to_the_api_model(runtime):
    respx.post(f"{BASE}/chat/completions").mock(return_value=completion('{"template": "ticket_status"}'))
    ticket = Ticket(text="my login is broken, what is happening with it")
    decision = TiedRouter(runtime.catalogue, None, RouterSettings(), DownTiebreaker(), api=ApiRouteModel(client())).route(ticket)
    assert (decision.template, decision.method) == ("ticket_status", "api")
    assert "local model is unavailable" in decision.detail and decision.model_calls[0].model_id == "gpt-test"
    with pytest.raises(ModelUnavailable):  # no API model configured: the graph escalates as model_unavailable
        TiedRouter(runtime.catalogue, None, RouterSettings(), DownTiebreaker()).route(ticket)


@respx.mock
def test_a_call_that_goes_over_the_budget_is_recorded_but_its_answer_not_used():
    """The server's usage decides: 10^9 prompt tokens (or a longer prompt than estimated) is
    paid for and on the record, and the ticket escalates; usage below zero is not a refund."""
    respx.post(f"{BASE}/chat/completions").mock(return_value=completion('{"answer": "yes"}', prompt=10**9))
    with pytest.raises(BudgetExceeded, match="exceeded by the last call") as caught:
        client().complete("route", "s", "u", Answer, TicketBudget(4000, 1000.0))
    assert [call.prompt_tokens for call in caught.value.calls] == [10**9]
    respx.post(f"{BASE}/chat/completions").mock(return_value=completion('{"answer": "yes"}', prompt=-1_000_000))
    with pytest.raises(ApiUnavailable, match="not a chat completion"):
        client().complete("route", "s", "u", Answer, TicketBudget(4000, 1.0))
    with pytest.raises(BudgetExceeded, match="the next call needs about"):  # a prompt that cannot fit is not sent
        client(max_tokens=16).complete("route", "s", "u" * 400, Answer, TicketBudget(100, 1.0))
