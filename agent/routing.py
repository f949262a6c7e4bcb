"""Routing: which plan template fits a ticket, how sure we are, or that none fits.

The first router is nearest neighbour over embedded example utterances per template; when
the best two templates are too close, the local model breaks the tie among them. A ticket
that matches nothing well enough escalates instead of being forced into the nearest template.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel

from agent.models.calls import ModelCall
from agent.settings import RouterSettings
from agent.tickets import Ticket
from plans.catalogue import Catalogue
from plans.models import Template, canonical_json
from tools.contracts.escalation import EscalationReason
from tools.embeddings import Embedder

ESCALATE_TEMPLATE = "escalate"


class Candidate(BaseModel):
    template: str
    score: float


class RouteDecision(BaseModel):
    template: str | None
    confidence: float
    method: Literal["nearest_neighbour", "model_tiebreak", "rule", "cache"]
    reason: EscalationReason | None = None
    detail: str = ""
    candidates: list[Candidate] = []
    model_calls: list[ModelCall] = []


class Router(Protocol):
    def route(self, ticket: Ticket) -> RouteDecision: ...


class RouteTiebreaker(Protocol):
    def choose(self, ticket: Ticket, candidates: list[Template]) -> ModelCall: ...


class ExampleBank:
    """Embedded example utterances of every routable template, cached on disk by content hash."""

    def __init__(self, catalogue: Catalogue, embedder: Embedder, cache_dir: Path | None) -> None:
        self.labels: list[str] = []
        texts: list[str] = []
        for template in catalogue.routable():
            for example in template.examples:
                self.labels.append(template.name)
                texts.append(example)
        self.templates = sorted(set(self.labels))
        digest = hashlib.sha256(canonical_json([embedder.model_id, self.labels, texts]).encode()).hexdigest()[:16]
        cache = cache_dir / f"examples-{digest}.npy" if cache_dir else None
        if cache is not None and cache.exists():
            self.vectors = np.load(cache)
        else:
            self.vectors = embedder.embed(texts) if texts else np.zeros((0, embedder.dim), dtype=np.float32)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.save(cache, self.vectors)
        self._label_index = np.array([self.templates.index(label) for label in self.labels])

    def scores(self, vector: np.ndarray) -> list[Candidate]:
        """Best example similarity per template, highest first."""
        similarities = self.vectors @ vector
        best = np.full(len(self.templates), -1.0, dtype=np.float32)
        np.maximum.at(best, self._label_index, similarities)
        order = np.argsort(-best)
        return [Candidate(template=self.templates[i], score=round(float(best[i]), 4)) for i in order]


class NearestNeighbourRouter:
    def __init__(
        self,
        catalogue: Catalogue,
        embedder: Embedder,
        settings: RouterSettings,
        tiebreaker: RouteTiebreaker | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.embedder = embedder
        self.settings = settings
        self.tiebreaker = tiebreaker if settings.use_model_tiebreak else None
        self.cache_dir = cache_dir
        self._bank: ExampleBank | None = None

    @property
    def bank(self) -> ExampleBank:
        if self._bank is None:
            self._bank = ExampleBank(self.catalogue, self.embedder, self.cache_dir)
        return self._bank

    def route(self, ticket: Ticket) -> RouteDecision:
        vector = self.embedder.embed([ticket.full_text[:2000]])[0]
        candidates = self.bank.scores(vector)[:3]
        if not candidates or candidates[0].score < self.settings.min_similarity:
            best = candidates[0].score if candidates else 0.0
            return RouteDecision(
                template=None,
                confidence=max(0.0, best),
                method="nearest_neighbour",
                reason="out_of_scope",
                detail=f"best similarity {best:.2f} is below {self.settings.min_similarity}",
                candidates=candidates,
            )
        best = candidates[0]
        runner_up = candidates[1] if len(candidates) > 1 else None
        if runner_up and best.score - runner_up.score < self.settings.min_margin and self.tiebreaker:
            return self._tiebreak(ticket, candidates[:2])
        return self._decision(best.template, best.score, "nearest_neighbour", candidates)

    def _tiebreak(self, ticket: Ticket, close: list[Candidate]) -> RouteDecision:
        call = self.tiebreaker.choose(ticket, [self.catalogue.get(c.template) for c in close])
        choice = call.output.get("template") if isinstance(call.output, dict) else None
        names = [c.template for c in close]
        if choice not in names:
            return RouteDecision(
                template=None,
                confidence=close[0].score,
                method="model_tiebreak",
                reason="low_confidence",
                detail=f"{names[0]} and {names[1]} are too close and the model chose {choice!r}",
                candidates=close,
                model_calls=[call],
            )
        score = next(c.score for c in close if c.template == choice)
        decision = self._decision(choice, score, "model_tiebreak", close)
        return decision.model_copy(update={"model_calls": [call]})

    def _decision(self, template: str, score: float, method: str, candidates: list[Candidate]) -> RouteDecision:
        reason = "customer_request" if template == ESCALATE_TEMPLATE else None
        return RouteDecision(template=template, confidence=score, method=method, reason=reason, candidates=candidates)
