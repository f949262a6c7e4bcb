"""The two small jobs the local model does, each with a fixed prompt and a tight JSON schema:
break a routing tie between candidate templates, and propose free-text slot values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import ConfigDict, create_model

from agent.models.api import ApiModel, TicketBudget
from agent.models.calls import ModelCall
from agent.models.local import LocalModel
from agent.tickets import Ticket
from plans.models import Template

NONE_FITS = "none"

ROUTE_SYSTEM = (
    "You route customer-support tickets. Pick the one workflow that handles the ticket, "
    f"or '{NONE_FITS}' if none of them does. Answer with JSON only."
)
SLOT_SYSTEM = (
    "You copy details out of a customer-support ticket. For each field, copy the exact words "
    "from the ticket, or null if the ticket does not say. Never invent values. Answer with JSON only."
)


def route_schema(choices: Sequence[str]) -> dict:
    return {
        "type": "object",
        "properties": {"template": {"type": "string", "enum": [*choices, NONE_FITS]}},
        "required": ["template"],
        "additionalProperties": False,
    }


class LocalRouteModel:
    """Asks the local model to choose among the router's closest templates."""

    def __init__(self, model: LocalModel) -> None:
        self.model = model

    def choose(self, ticket: Ticket, candidates: Sequence[Template]) -> ModelCall:
        menu = "\n".join(f"- {template.name}: {template.description}" for template in candidates)
        user = f"Workflows:\n{menu}\n\nTicket:\n{ticket.full_text[:1500]}"
        return self.model.complete_json("route", ROUTE_SYSTEM, user, route_schema([t.name for t in candidates]), 24)


class LocalSlotModel:
    """Asks the local model for free-text slot values; the filler checks they are grounded."""

    def __init__(self, model: LocalModel) -> None:
        self.model = model

    def propose(self, template: Template, names: list[str], ticket: Ticket, feedback: str | None) -> ModelCall:
        fields = "\n".join(f"- {name}: {template.slots[name].description}" for name in names)
        user = f"Fields:\n{fields}\n\nTicket:\n{ticket.full_text[:1500]}"
        if feedback:
            user += f"\n\nYour previous answer was rejected: {feedback}"
        schema = {
            "type": "object",
            "properties": {
                name: {"anyOf": [{"type": "string", "maxLength": template.slots[name].max_length}, {"type": "null"}]}
                for name in names
            },
            "required": names,
            "additionalProperties": False,
        }
        budget = min(256, 16 + sum(template.slots[name].max_length // 3 for name in names))
        return self.model.complete_json("slots", SLOT_SYSTEM, user, schema, budget)


class ApiRouteModel:
    """Asks the API model to choose among candidate templates when the local path is unsure.

    The answer's schema is an enum of the candidates plus 'none', so whatever comes back names a
    real template or says none fits; re-asks, retries and the ticket budget live in `ApiModel`.
    """

    def __init__(self, model: ApiModel) -> None:
        self.model = model

    def choose(self, ticket: Ticket, candidates: Sequence[Template], budget: TicketBudget) -> ModelCall:
        names = [template.name for template in candidates]
        choice = create_model("RouteChoice", template=(Literal[(*names, NONE_FITS)], ...), __config__=ConfigDict(extra="forbid"))
        menu = "\n".join(f"- {template.name}: {template.description}" for template in candidates)
        user = f"Workflows:\n{menu}\n\nTicket:\n{ticket.full_text}"  # masked, then cut, by the API model
        return self.model.complete("route", ROUTE_SYSTEM, user, choice, budget)
