"""Constrained value types shared by tool contracts, so bad identifiers fail validation early."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StringConstraints

EMAIL_PATTERN = r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}$"
EMAIL_RE = re.compile(EMAIL_PATTERN)


def _lower(value: str) -> str:
    return value.lower()


Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254, pattern=EMAIL_PATTERN), AfterValidator(_lower)
]
TicketId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
UserId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000)]


def mask_email(email: str) -> str:
    """`jane@example.com` -> `j***@example.com`: enough for a customer to recognise, no more."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def require_present(*names: str, exactly_one: bool = False) -> dict[str, list[dict]]:
    """JSON Schema for "at least one (or exactly one) of these fields, and not null", the
    rule a model validator enforces in Python, so the exported schema says it too."""
    options = [{"required": [name], "properties": {name: {"not": {"type": "null"}}}} for name in names]
    return {"oneOf" if exactly_one else "anyOf": options}
