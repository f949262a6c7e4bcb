"""The ticket as it crosses into caseplan: validated once, here, with clear errors."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from tools.contracts.types import Email, TicketId
from tools.safe_parse import load_json


def without_nul(value: str) -> str:
    """NUL cannot be stored in PostgreSQL text and has no place in anything a person writes."""
    if "\x00" in value:
        raise ValueError("contains NUL characters")
    return value


NO_NUL = AfterValidator(without_nul)


class Ticket(BaseModel):
    """A support ticket from the platform. `requester_email` is the sender the platform
    authenticated; an address written in the text is only a claim."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True, frozen=True)

    text: Annotated[str, Field(min_length=1), NO_NUL]
    subject: Annotated[str, Field(max_length=500), NO_NUL] | None = None
    ticket_id: TicketId | None = None
    requester_email: Email | None = None
    tags: list[Annotated[str, Field(min_length=1, max_length=100), NO_NUL]] = Field(default_factory=list, max_length=50)
    customer_tier: Annotated[str, Field(max_length=50), NO_NUL] | None = None
    channel: Annotated[str, Field(max_length=50), NO_NUL] | None = None

    @property
    def full_text(self) -> str:
        return f"{self.subject}\n{self.text}" if self.subject else self.text


class TicketError(ValueError):
    """A ticket caseplan will not accept; the message says why in one line."""


def _validation_summary(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "ticket"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def parse_ticket(data: Any, max_chars: int) -> Ticket:
    """Validate a ticket mapping; size and character checks happen before anything is stored."""
    if not isinstance(data, dict):
        raise TicketError("a ticket must be a JSON object")
    try:
        ticket = Ticket.model_validate(data)
    except ValidationError as exc:
        raise TicketError(f"invalid ticket: {_validation_summary(exc)}") from None
    if len(ticket.text) > max_chars:
        raise TicketError(f"ticket text is {len(ticket.text)} characters; the limit is {max_chars}")
    return ticket


def ticket_document_bytes(max_chars: int) -> int:
    """The most bytes a ticket document with `max_chars` of text can need (UTF-8, JSON fields)."""
    return max_chars * 4 + 4096


def decode_ticket_bytes(raw: bytes, max_chars: int) -> Ticket:
    """A ticket JSON document from bytes (file or request body)."""
    if len(raw) > ticket_document_bytes(max_chars):
        raise TicketError(f"ticket document is {len(raw)} bytes; too large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TicketError(f"ticket is not valid UTF-8 (byte {exc.start})") from None
    try:
        data = load_json(text)
    except json.JSONDecodeError as exc:
        raise TicketError(f"ticket is not valid JSON: {exc.msg.removesuffix(' at')} at line {exc.lineno} column {exc.colno}") from None
    return parse_ticket(data, max_chars)
