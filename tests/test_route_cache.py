"""The route cache: exact and semantic hits reuse the route (never slots or model calls),
version changes invalidate, transient failures are not remembered."""

from __future__ import annotations

import pytest

from agent.models.calls import ModelCall
from agent.route_cache import CachingRouter
from agent.routing import NearestNeighbourRouter, RouteDecision
from agent.settings import RouteCacheSettings, RouterSettings
from agent.tickets import Ticket

pytestmark = pytest.mark.slow


class CountingRouter(NearestNeighbourRouter):
    """The real router, counting how often it really decides, and optionally failing transiently."""

    calls = 0
    fail_with: str | None = None

    def route_vector(self, ticket, vector):
        self.calls += 1
        if self.fail_with:
            return RouteDecision(template=None, confidence=0.0, method="api", reason=self.fail_with)
        decision = super().route_vector(ticket, vector)
        return decision.model_copy(update={"model_calls": [ModelCall(purpose="route", model_id="m", prompt_tokens=9)]})


def make(runtime, embedder, **cache) -> tuple[CachingRouter, CountingRouter]:
    inner = CountingRouter(runtime.catalogue, embedder, RouterSettings(use_model_tiebreak=False), None, None)
    return CachingRouter(inner, RouteCacheSettings(**cache), {"catalogue": "c1", "policy": "p1"}), inner


def test_exact_and_semantic_hits_reuse_only_the_route(runtime, embedder):
    router, inner = make(runtime, embedder, min_similarity=0.95)
    first = router.route(Ticket(text="I forgot my password, reset it for jane@example.com"))
    assert first.template == "password_reset" and first.cache_hit is None and first.model_calls
    again = router.route(Ticket(text="  i forgot my PASSWORD, reset it for jane@example.com "))
    assert again.template == "password_reset" and again.cache_hit == "exact" and again.detail == first.detail
    assert again.model_calls == [] and inner.calls == 1
    similar = router.route(Ticket(text="I forgot my password, reset it for jane@example.com!"))
    assert similar.cache_hit.startswith("semantic") and inner.calls == 1
    other = router.route(Ticket(text="how long does shipping take"))
    assert other.cache_hit is None and inner.calls == 2
    assert router.hits == {"exact": 1, "semantic": 1, "miss": 2}


def test_version_change_invalidates_and_transient_failures_are_not_cached(runtime, embedder):
    router, inner = make(runtime, embedder, semantic=False)
    ticket = Ticket(text="what is the status of ticket 1001")
    router.route(ticket)
    router.route(ticket)
    assert inner.calls == 1
    router.set_versions({"catalogue": "c2", "policy": "p1"})
    router.route(ticket)
    assert inner.calls == 2
    inner.fail_with = "model_unavailable"
    flaky = Ticket(text="my login is broken somehow")
    assert router.route(flaky).reason == "model_unavailable"
    inner.fail_with = None
    assert router.route(flaky).reason != "model_unavailable" and inner.calls == 4
