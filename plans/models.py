"""Templates (what a workflow looks like) and plans (what will run for one ticket).

A plan is plain data: its hash is the sha256 of its canonical JSON, so the same ticket,
models and catalogue always give the same hash, and any edit to a stored plan shows.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from plans.refs import STEP_ID_PATTERN

SlotType = Literal["email", "ticket_id", "order_id", "invoice_id", "user_id", "text", "choice"]
SLOT_SOURCES = (
    "ticket.requester_email",
    "ticket.ticket_id",
    "ticket.text",
    "ticket.subject",
    "pattern",
    "model",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlotSpec(_Strict):
    """One value a template needs and where it may come from, in order of preference.

    `pattern` extracts from the ticket text with a deterministic pattern for the type;
    `model` asks the local model and keeps the value only if it occurs in the ticket text;
    `context.<name>` is supplied by the orchestrator (e.g. an escalation reason).
    """

    type: SlotType
    description: str = ""
    required: bool = True
    sources: list[str] = Field(min_length=1)
    choices: list[str] = []
    max_length: int = Field(500, ge=1, le=20000)


class ReplySpec(_Strict):
    """The customer-facing reply: fixed text with placeholders, passages from a search step, or none."""

    kind: Literal["text", "knowledge", "none"] = "text"
    text: str = ""
    search_step: str | None = None


class TemplateStep(_Strict):
    id: str = Field(pattern=f"^{STEP_ID_PATTERN}$")
    tool: str
    args: dict[str, Any] = {}
    description: str = ""
    abcd_action: str | None = None
    on_error: Literal["escalate", "fail"] = "escalate"
    # An optional slot: the step is in the plan only when that slot is filled (a check that
    # needs a value the ticket may not carry, such as the id of the ticket being handled).
    only_if: str | None = Field(None, pattern=f"^{STEP_ID_PATTERN}$")


class Template(_Strict):
    name: str = Field(pattern=f"^{STEP_ID_PATTERN}$")
    version: int = Field(ge=1, le=1_000_000)
    description: str
    abcd_flow: str | None = None
    routable: bool = True
    examples: list[str] = []
    slots: dict[str, SlotSpec] = {}
    steps: list[TemplateStep] = Field(min_length=1)
    reply: ReplySpec = ReplySpec(kind="none")
    # Regular expressions (case-insensitive) for tickets that sound like this workflow but say
    # otherwise ("don't close it yet", "I did not forget my password"): meaning-based routing
    # cannot tell them apart, so a match sends the ticket to a person instead.
    not_when: list[str] = []
    _source: str = PrivateAttr(default="<memory>")

    @field_validator("not_when")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not_when pattern {pattern!r} is not a regular expression: {exc}") from None
        return patterns

    @property
    def source(self) -> str:
        return self._source

    def contradicted_by(self, text: str) -> str | None:
        """The words of `text` that say not to run this workflow, if any (typographic
        apostrophes read as plain ones: "don’t" is "don't")."""
        text = text.replace("\u2019", "'").replace("\u2018", "'")
        for pattern in self.not_when:
            if found := re.search(pattern, text, re.IGNORECASE):
                return found.group(0)
        return None


class Step(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    tool: str
    args: dict[str, Any]
    description: str = ""
    on_error: Literal["escalate", "fail"] = "escalate"


def canonical_json(data: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the byte string hashes are taken over."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


class Plan(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = 1
    template: str
    template_version: int
    catalogue_version: str
    ticket_id: str | None
    slots: dict[str, Any]
    steps: tuple[Step, ...]
    reply: ReplySpec

    def canonical_json(self) -> str:
        return canonical_json(self.model_dump(mode="json"))

    @cached_property
    def hash(self) -> str:
        """Computed once per instance: a frozen plan cannot change under it."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)
