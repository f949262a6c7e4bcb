"""Routing-decision cache: exact (normalised text) and semantic (embedding similarity).

Only the route is cached, never slots: a cached decision names a template, and the planner
still reads identifiers from the new ticket itself. Keys include the catalogue, policy and
model versions, so a change to any of them invalidates every entry. Transient outcomes (the
API model unavailable, a budget spent) are not cached. A hit is visible in the run record as
a route whose `cache_hit` says which kind; the rest of the decision (and so the plan built
from it) is exactly what the router said the first time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from agent.routing import NearestNeighbourRouter, RouteDecision
from agent.settings import RouteCacheSettings
from agent.slots import normalise
from agent.tickets import Ticket
from plans.models import canonical_json

TRANSIENT = {"model_unavailable", "budget_exceeded"}


class CachingRouter:
    """Wraps the nearest-neighbour router; same `route` interface."""

    def __init__(self, inner: NearestNeighbourRouter, settings: RouteCacheSettings, versions: dict[str, str]) -> None:
        self.inner = inner
        self.settings = settings
        self.versions = canonical_json(versions)
        self._exact: OrderedDict[str, RouteDecision] = OrderedDict()
        self._vectors: list[np.ndarray] = []
        self._decisions: list[RouteDecision] = []
        self.hits = {"exact": 0, "semantic": 0, "miss": 0}

    def set_versions(self, versions: dict[str, str]) -> None:
        """New catalogue, policy or model versions: forget everything."""
        encoded = canonical_json(versions)
        if encoded != self.versions:
            self.versions = encoded
            self._exact.clear()
            self._vectors.clear()
            self._decisions.clear()

    def _key(self, ticket: Ticket) -> str:
        return hashlib.sha256(f"{self.versions}\n{normalise(ticket.full_text)}".encode()).hexdigest()

    def route(self, ticket: Ticket) -> RouteDecision:
        key = self._key(ticket)
        if key in self._exact:
            self._exact.move_to_end(key)
            self.hits["exact"] += 1
            return self._hit(self._exact[key], "exact")
        vector = self.inner.embed(ticket)
        if self.settings.semantic and self._vectors:
            similarities = np.stack(self._vectors) @ vector
            best = int(np.argmax(similarities))
            if similarities[best] >= self.settings.min_similarity:
                self.hits["semantic"] += 1
                return self._hit(self._decisions[best], f"semantic ({similarities[best]:.3f})")
        self.hits["miss"] += 1
        decision = self.inner.route_vector(ticket, vector)
        if decision.reason not in TRANSIENT:
            self._remember(key, vector, decision)
        return decision

    def _remember(self, key: str, vector: np.ndarray, decision: RouteDecision) -> None:
        self._exact[key] = decision
        if len(self._exact) > self.settings.max_entries:
            self._exact.popitem(last=False)
        if self.settings.semantic:
            self._vectors.append(vector)
            self._decisions.append(decision)
            if len(self._vectors) > self.settings.max_entries:
                self._vectors.pop(0)
                self._decisions.pop(0)

    @staticmethod
    def _hit(decision: RouteDecision, how: str) -> RouteDecision:
        # The model calls belong to the ticket that paid for them; this one made none.
        return decision.model_copy(update={"cache_hit": how, "model_calls": []})
