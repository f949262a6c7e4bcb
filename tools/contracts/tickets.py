"""Helpdesk ticket contracts: look a ticket up (read-only) and update it (side effect).

The issue's `ticket_status` contract is deliberately two tools, `ticket_lookup` and
`ticket_update`, so that each declares its side effects honestly and policies can gate
the write without touching the read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from tools.base import Tool, ToolInput, ToolModel
from tools.contracts.types import Email, ShortText, TicketId, require_present

TicketStatus = Literal["new", "open", "pending", "on_hold", "solved", "closed"]
SettableStatus = Literal["open", "pending", "on_hold", "solved", "closed"]

# Which statuses a ticket may move to from each status. `closed` is final, as in Zendesk.
LEGAL_TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"open", "pending", "on_hold", "solved", "closed"}),
    "open": frozenset({"open", "pending", "on_hold", "solved", "closed"}),
    "pending": frozenset({"open", "pending", "on_hold", "solved", "closed"}),
    "on_hold": frozenset({"open", "pending", "on_hold", "solved", "closed"}),
    "solved": frozenset({"open", "solved", "closed"}),
    "closed": frozenset(),
}


def transition_error(current: str, target: str) -> str | None:
    """Why `current -> target` is illegal, or None when it is allowed."""
    if target in LEGAL_TRANSITIONS.get(current, frozenset()):
        return None
    if current == "closed":
        return "ticket is closed; a closed ticket cannot change status"
    return f"illegal status transition {current} -> {target}"


class TicketLookupInput(ToolInput):
    """Read one ticket: subject, status, requester, tags."""

    ticket_id: TicketId = Field(description="The helpdesk's ticket id.")


class TicketView(ToolModel):
    ticket_id: TicketId
    subject: str
    status: TicketStatus
    requester_email: Email | None = None
    tags: list[str] = []
    updated_at: datetime | None = None


class TicketUpdateInput(ToolInput):
    """Change a ticket's status and/or add a public reply or an internal note."""

    model_config = ConfigDict(json_schema_extra=require_present("status", "public_reply", "internal_note"))

    ticket_id: TicketId = Field(description="The helpdesk's ticket id.")
    status: SettableStatus | None = Field(None, description="New status; illegal transitions (e.g. from closed) are refused.")
    public_reply: ShortText | None = Field(None, description="A comment the customer sees.")
    internal_note: ShortText | None = Field(None, description="A private comment only agents see.")

    @model_validator(mode="after")
    def _something_to_do(self) -> TicketUpdateInput:
        if self.status is None and self.public_reply is None and self.internal_note is None:
            raise ValueError("an update needs a status, a public reply or an internal note")
        return self


class TicketUpdateOutput(ToolModel):
    ticket_id: TicketId
    previous_status: TicketStatus
    status: TicketStatus
    comment_ids: list[str] = []


class TicketLookupTool(Tool[TicketLookupInput, TicketView]):
    """The `ticket_lookup` contract; each helpdesk adapter implements `invoke`."""

    name = "ticket_lookup"
    description = "Look up a helpdesk ticket: subject, status, requester and tags."
    input_model = TicketLookupInput
    output_model = TicketView
    side_effects = False


class TicketUpdateTool(Tool[TicketUpdateInput, TicketUpdateOutput]):
    """The `ticket_update` contract; each helpdesk adapter implements `invoke`."""

    name = "ticket_update"
    description = "Change a ticket's status and/or add a public reply or internal note."
    input_model = TicketUpdateInput
    output_model = TicketUpdateOutput
    side_effects = True
