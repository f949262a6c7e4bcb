"""Routing: which plan template fits a ticket, how sure we are, or that none fits.

Nearest neighbour over embedded example utterances (the templates' own and labelled datasets
such as Bitext's train.csv): each template scores its closest example. When the best two
templates are too close, the local model breaks the tie among them. A ticket that matches
nothing well enough escalates (`out_of_scope`), and a ticket whose closest example of a
handling template is not close enough escalates too (`low_confidence`): a template with side
effects is never chosen on a weak match. Both thresholds are calibrated on training data only
(`caseplan eval routing --calibrate`).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel

from agent.example_bank import ExampleBank, build_bank
from agent.models.api import ApiModel, ApiModelError, TicketBudget
from agent.models.calls import ModelCall
from agent.models.local import ModelUnavailable
from agent.settings import RouterSettings
from agent.tickets import Ticket
from plans.catalogue import Catalogue
from plans.models import Template
from tools.contracts.escalation import EscalationReason
from tools.embeddings import Embedder
from tools.registry import ToolRegistry

ESCALATE_TEMPLATE = "escalate"


class Candidate(BaseModel):
    template: str
    score: float


class RouteDecision(BaseModel):
    template: str | None
    confidence: float
    method: Literal["nearest_neighbour", "model_tiebreak", "api", "rule"]
    reason: EscalationReason | None = None
    detail: str = ""
    candidates: list[Candidate] = []
    model_calls: list[ModelCall] = []
    cache_hit: str | None = None  # "exact" or "semantic (0.983)": the route came from the route cache


class Router(Protocol):
    def route(self, ticket: Ticket) -> RouteDecision: ...


class RouteTiebreaker(Protocol):
    def choose(self, ticket: Ticket, candidates: list[Template]) -> ModelCall: ...


class ApiRouter(Protocol):
    """The API model's routing job (agent.models.tasks.ApiRouteModel)."""

    model: ApiModel

    def choose(self, ticket: Ticket, candidates: list[Template], budget: TicketBudget) -> ModelCall: ...


def side_effect_templates(catalogue: Catalogue, registry: ToolRegistry) -> set[str]:
    """Templates (other than escalate) with at least one side-effecting step."""
    return {
        template.name
        for template in catalogue.routable()
        if template.name != ESCALATE_TEMPLATE and any(registry.get(step.tool).side_effects for step in template.steps)
    }


class NearestNeighbourRouter:
    def __init__(
        self,
        catalogue: Catalogue,
        embedder: Embedder,
        settings: RouterSettings,
        tiebreaker: RouteTiebreaker | None = None,
        cache_dir: Path | None = None,
        api: ApiRouter | None = None,
        acting: Collection[str] = frozenset(),
    ) -> None:
        """`acting`: templates with side effects (`side_effect_templates`); a near tie never
        chooses one of them, whether no model breaks it or the local model picks it."""
        self.catalogue = catalogue
        self.acting = frozenset(acting)
        self.embedder = embedder
        self.settings = settings
        self.tiebreaker = tiebreaker if settings.use_model_tiebreak else None
        self.cache_dir = cache_dir
        self.api = api
        self._bank: ExampleBank | None = None

    @property
    def bank(self) -> ExampleBank:
        if self._bank is None:
            self._bank = build_bank(self.catalogue, self.embedder, self.settings.example_sets, self.cache_dir)
        return self._bank

    def use_bank(self, bank: ExampleBank) -> None:
        """Route against another bank (evaluation: leave-intents-out)."""
        self._bank = bank

    def embed(self, ticket: Ticket) -> np.ndarray:
        return self.embedder.embed([ticket.full_text[:2000]])[0]

    def route(self, ticket: Ticket) -> RouteDecision:
        return self.route_vector(ticket, self.embed(ticket))

    def route_vector(self, ticket: Ticket, vector: np.ndarray) -> RouteDecision:
        """Route a ticket whose embedding is already known (batch evaluation embeds all at once).

        A low-confidence local decision goes to the API model when one is configured."""
        decision = self._local(ticket, vector)
        if decision.reason == "low_confidence" and self.api is not None and decision.candidates:
            return self._ask_api(ticket, decision)
        return decision

    def _ask_api(self, ticket: Ticket, local: RouteDecision) -> RouteDecision:
        names = [c.template for c in local.candidates]
        budget = self.api.model.budget()
        try:
            call = self.api.choose(ticket, [self.catalogue.get(n) for n in names], budget)
        except ApiModelError as exc:
            return local.model_copy(
                update={"method": "api", "reason": exc.reason, "detail": f"{local.detail}; API model: {exc}", "model_calls": [*local.model_calls, *exc.calls]}
            )
        calls = [*local.model_calls, *budget.calls]
        choice = call.output["template"]
        if choice not in names:
            detail = f"{local.detail}; API model says none of {names} fits"
            return local.model_copy(update={"method": "api", "reason": "out_of_scope", "detail": detail, "model_calls": calls})
        reason = "customer_request" if choice == ESCALATE_TEMPLATE else None
        return RouteDecision(
            template=choice,
            confidence=local.confidence,
            method="api",
            reason=reason,
            detail=f"local path unsure ({local.detail}); API model chose {choice}",
            candidates=local.candidates,
            model_calls=calls,
        )

    def _local(self, ticket: Ticket, vector: np.ndarray) -> RouteDecision:
        candidates, nearest = template_scores(self.bank, vector)
        candidates = candidates[:3]
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
        asked_for_person = best.template == ESCALATE_TEMPLATE and self._asks_for_person(nearest)
        if runner_up and best.score - runner_up.score < self.settings.min_margin and not asked_for_person:
            if self.tiebreaker:
                return self._tiebreak(ticket, candidates[:2], nearest)
            if best.template in self.acting:  # a coin toss never resets a password or closes a ticket
                why = f"no model breaks the tie ({best.score:.2f} vs {runner_up.score:.2f})"
                return _too_close(candidates, "nearest_neighbour", why)
        return self._decision(best.template, best.score, "nearest_neighbour", candidates, nearest)

    def _tiebreak(self, ticket: Ticket, close: list[Candidate], nearest: dict[str, str]) -> RouteDecision:
        names = [c.template for c in close]
        try:
            call = self.tiebreaker.choose(ticket, [self.catalogue.get(c.template) for c in close])
        except ModelUnavailable as exc:
            if self.api is None:
                raise
            # Unsure without the local model: the API model, next on the ladder, is asked instead.
            return _too_close(close, "model_tiebreak", f"the local model is unavailable ({exc})")
        choice = call.output.get("template") if isinstance(call.output, dict) else None
        if choice not in names:
            return _too_close(close, "model_tiebreak", f"the model chose {choice!r}", [call])
        if choice in self.acting:  # a tiny model's pick in a tie is not enough to act on an account or ticket
            return _too_close(close, "model_tiebreak", f"the model's pick, {choice}, has side effects", [call])
        score = next(c.score for c in close if c.template == choice)
        decision = self._decision(choice, score, "model_tiebreak", close, nearest)
        return decision.model_copy(update={"model_calls": [call]})

    def _decision(
        self, template: str, score: float, method: str, candidates: list[Candidate], nearest: dict[str, str]
    ) -> RouteDecision:
        if template == ESCALATE_TEMPLATE:
            # The escalate examples either ask for a person (its own examples, contact_human_agent,
            # complaint) or are requests no template handles (an unsupported dataset intent).
            label = nearest.get(template, template)
            asked = self._asks_for_person(nearest)
            return RouteDecision(
                template=template,
                confidence=score,
                method=method,
                reason="customer_request" if asked else "out_of_scope",
                detail=f"closest example is a {label!r} request",
                candidates=candidates,
            )
        if score < self.settings.min_template_similarity:
            return RouteDecision(
                template=None,
                confidence=score,
                method=method,
                reason="low_confidence",
                detail=f"closest {template} example has similarity {score:.2f}, below {self.settings.min_template_similarity}",
                candidates=candidates,
            )
        return RouteDecision(template=template, confidence=score, method=method, candidates=candidates)


    def _asks_for_person(self, nearest: dict[str, str]) -> bool:
        """Rule: the closest escalate example is a request for a person (or a complaint); no model
        is asked to overrule that."""
        label = nearest.get(ESCALATE_TEMPLATE)
        return label is not None and (label == ESCALATE_TEMPLATE or label in self.bank.person_labels)


def _too_close(close: list[Candidate], method: Literal["nearest_neighbour", "model_tiebreak"], why: str, calls: list[ModelCall] | None = None) -> RouteDecision:
    """Unsure between the two best templates (`close[:2]`), and why no one settled it."""
    return RouteDecision(
        template=None,
        confidence=close[0].score,
        method=method,
        reason="low_confidence",
        detail=f"{close[0].template} and {close[1].template} are too close and {why}",
        candidates=close,
        model_calls=calls or [],
    )


def template_scores(bank: ExampleBank, vector: np.ndarray) -> tuple[list[Candidate], dict[str, str]]:
    """Best example similarity per template, highest first, and the label of that example."""
    if len(bank.templates) == 0:
        return [], {}
    similarities = bank.vectors @ vector
    order = np.argsort(-similarities)
    best: dict[str, tuple[float, str]] = {}
    for index in order:
        template = str(bank.templates[index])
        if template not in best:
            best[template] = (float(similarities[index]), str(bank.labels[index]))
    ranked = sorted(best.items(), key=lambda item: -item[1][0])
    return [Candidate(template=t, score=round(s, 4)) for t, (s, _) in ranked], {t: label for t, (_, label) in ranked}
