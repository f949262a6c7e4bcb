"""Slot filling: deterministic patterns first, the local model last, and only grounded values.

A value the model proposes is kept only if it occurs in the ticket text; otherwise the slot
stays missing and the ticket escalates. No invented identifier ever reaches a tool.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import BaseModel

from agent.models.calls import ModelCall
from agent.tickets import Ticket
from plans.models import SlotSpec, Template
from tools.contracts.types import EMAIL_RE

# No two `\s*` meet through an optional part: a keyword followed by 20,000 spaces would make the
# engine try every split of the run (hours of CPU for one ticket).
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}")
_TICKET = re.compile(
    r"(?:\b(?:ticket|case|request)\s*(?:(?:number|no\.?|nr\.?|id|№)\s*(?:is\s+)?)?(?:[-:#]\s*)?#?|(?<![\w&])#)((?:[A-Za-z]{1,6}-?)?\d{3,12})\b",
    re.IGNORECASE,
)
_TICKET_LIST = re.compile(r"\b(?:tickets|cases|requests)\b((?:[^.!?\n\d]{0,12}#?\d{3,12}\b){1,10})", re.IGNORECASE)
# "ticket 1003 and also 1004", "case #12, #13 or 14": numbers joined on to a named ticket are tickets too.
_TICKET_MORE = re.compile(
    r"(?:\s{0,3}(?:,|/|&|\+|\b(?:and|or|plus|as well as)\b)\s{0,3}(?:also\s{1,3}|then\s{1,3})?(?:(?:ticket|case|request)\s{0,3})?#?(\d{3,12})\b)",
    re.IGNORECASE,
)
# "ticket 42", "case #1OO1": a ticket named in a form no helpdesk id takes (too short, letters
# for digits). Filling the slot from the ticket being handled instead would act on another one.
_TICKET_UNREADABLE = re.compile(r"\b(?:ticket|case)\s{0,3}(?:(?:number|no\.?|nr\.?|id)\s{0,3})?(?:[-:#]\s{0,3})?#?(\w{1,16})", re.IGNORECASE)
_ORDER = re.compile(r"\b(?:order|purchase)s?\s*(?:(?:number|no\.?|id)\s*)?(?:[:#]\s*)?#?([A-Za-z]{0,4}-?\d{4,20})\b", re.IGNORECASE)
_INVOICE = re.compile(r"\b(?:invoice|bill|receipt)s?\s*(?:(?:number|no\.?|id)\s*)?(?:[:#]\s*)?#?([A-Za-z]{0,4}-?\d{3,20})\b", re.IGNORECASE)
PATTERNS: dict[str, re.Pattern[str]] = {"email": _EMAIL, "ticket_id": _TICKET, "order_id": _ORDER, "invoice_id": _INVOICE}
# A '#123' after "order" or "bill" names an order or invoice, not a ticket.
_NOT_TICKETS = (_ORDER, _INVOICE)


class SlotFill(BaseModel):
    """What slot filling found, where each value came from, and what it refused."""

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    missing: list[str] = []
    ambiguous: dict[str, list[str]] = {}
    rejected: dict[str, str] = {}
    model_calls: list[ModelCall] = []


def find_pattern(slot_type: str, text: str) -> list[str]:
    """Distinct matches for a typed pattern, in order of appearance."""
    pattern = PATTERNS.get(slot_type)
    if pattern is None:
        return []
    found: list[str] = []
    for match in pattern.finditer(text):
        value = (match.group(1) if pattern.groups else match.group(0)).strip(".")
        if slot_type == "email":
            value = value.lower()
            if not EMAIL_RE.match(value):
                continue
        if value not in found:
            found.append(value)
    if slot_type == "ticket_id":  # "tickets 1003/1004", "ticket 1003 and also 1004": every one is a candidate
        for listed in _TICKET_LIST.finditer(text):
            found += [number for number in re.findall(r"\d{3,12}", listed.group(1)) if number not in found]
        for named in pattern.finditer(text):
            found += [number for number in _joined_on(text, named.end()) if number not in found]
        others = {m.group(1) for other in _NOT_TICKETS for m in other.finditer(text)}
        found = [value for value in found if value not in others]
    return found


def unreadable_ticket(text: str) -> str | None:
    """A ticket the text names in a form `find_pattern` does not read as a ticket id, if any."""
    for match in _TICKET_UNREADABLE.finditer(text):
        if any(char.isdigit() for char in match.group(1)):
            return match.group(1)
    return None


def _joined_on(text: str, position: int) -> list[str]:
    """Ticket numbers listed straight after the one that ends at `position`."""
    numbers = []
    while (more := _TICKET_MORE.match(text, position)) and len(numbers) < 10:
        numbers.append(more.group(1))
        position = more.end()
    return numbers


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def is_grounded(value: str, text: str) -> bool:
    """True when the value occurs in the text, ignoring case and whitespace runs."""
    needle = normalise(value)
    return bool(needle) and needle in normalise(text)


class SlotModel(Protocol):
    """A model that proposes free-text slot values as a JSON object keyed by slot name."""

    def propose(self, template: Template, names: list[str], ticket: Ticket, feedback: str | None) -> ModelCall:
        """Ask for `names`; `feedback` explains what was wrong with the previous answer."""


class SlotFiller:
    """Fills a template's slots from the ticket, orchestrator context and (optionally) a model."""

    def __init__(self, model: SlotModel | None, max_attempts: int) -> None:
        self.model = model
        self.max_attempts = max_attempts

    def fill(self, template: Template, ticket: Ticket, context: Mapping[str, Any] | None = None) -> SlotFill:
        context = context or {}
        fill = SlotFill()
        wants_model: list[str] = []
        for name, spec in template.slots.items():
            value, source = self._deterministic(name, spec, ticket, context, fill)
            if value is not None:
                fill.values[name], fill.sources[name] = value, source
            elif "model" in spec.sources and self.model is not None and name not in fill.ambiguous:
                wants_model.append(name)
        if wants_model:
            self._from_model(template, wants_model, ticket, fill)
        fill.missing = [
            name for name, spec in template.slots.items() if spec.required and name not in fill.values
        ]
        return fill

    def _deterministic(
        self, name: str, spec: SlotSpec, ticket: Ticket, context: Mapping[str, Any], fill: SlotFill
    ) -> tuple[Any, str]:
        for source in spec.sources:
            value: Any = None
            if source.startswith("ticket."):
                value = getattr(ticket, source.removeprefix("ticket."), None)
                if source == "ticket.text" and value:
                    value = ticket.full_text
            elif source.startswith("context."):
                value = context.get(source.removeprefix("context."))
            elif source == "pattern":
                found = find_pattern(spec.type, ticket.full_text)
                if len(found) > 1:
                    fill.ambiguous[name] = found
                    return None, ""
                if not found and spec.type == "ticket_id" and (named := unreadable_ticket(ticket.full_text)):
                    fill.rejected[name] = f"the ticket names ticket {named!r}, which is not a ticket id"
                    return None, ""
                value = found[0] if found else None
            if value in (None, ""):
                continue
            if isinstance(value, str):
                value = _clip(value, spec.max_length) if spec.type == "text" else value
                if spec.type == "choice" and value not in spec.choices:
                    fill.rejected[name] = f"{value!r} is not one of {spec.choices}"
                    continue
            return value, source
        return None, ""

    def _from_model(self, template: Template, names: list[str], ticket: Ticket, fill: SlotFill) -> None:
        feedback = None
        remaining = list(names)
        for _ in range(self.max_attempts):
            call = self.model.propose(template, remaining, ticket, feedback)
            fill.model_calls.append(call)
            proposals = call.output if isinstance(call.output, dict) else {}
            problems = []
            for name in list(remaining):
                value = proposals.get(name)
                if value in (None, ""):
                    continue
                spec = template.slots[name]
                if not isinstance(value, str) or len(value) > spec.max_length:
                    problems.append(f"{name}: must be a string of at most {spec.max_length} characters")
                elif not is_grounded(value, ticket.full_text):
                    fill.rejected[name] = f"model value {value[:80]!r} does not occur in the ticket"
                    problems.append(f"{name}: copy the exact words from the ticket, or null")
                else:
                    fill.values[name], fill.sources[name] = value.strip(), "model"
                    fill.rejected.pop(name, None)
                    remaining.remove(name)
            if not remaining or not problems:
                return
            feedback = "; ".join(problems)


def _clip(text: str, limit: int) -> str:
    """Cut long text at a sentence or word boundary under the limit."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    for mark in (". ", "? ", "! ", "\n", " "):
        position = cut.rfind(mark)
        if position > limit // 2:
            return cut[: position + 1].strip()
    return cut
