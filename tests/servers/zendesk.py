"""A Zendesk-style tickets API: `GET/PUT /api/v2/tickets/{id}.json`, requester sideloading with
`include=users`, `hold` for on-hold, one comment per update, an audit of what changed, and
closed tickets refusing updates (422), as Zendesk does."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from tests.servers.base import FakeApi, Reply, Seen

TICKET_PATH = re.compile(r"^/api/v2/tickets/(?P<id>[^/]+)\.json$")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
NOT_FOUND = Reply(404, {"error": "RecordNotFound", "description": "Not found"})


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ZendeskApi(FakeApi):
    def __init__(self, auth: str | None = None) -> None:
        super().__init__(auth)
        self.users: dict[int, dict[str, Any]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self._next_id = 9000

    def add_user(self, user_id: int, email: str, name: str) -> None:
        self.users[user_id] = {"id": user_id, "email": email, "name": name}

    def add_ticket(self, ticket_id: int, subject: str, status: str, requester_id: int, tags: list[str] | None = None) -> None:
        self.tickets[ticket_id] = {
            "id": ticket_id,
            "subject": subject,
            "status": status,
            "requester_id": requester_id,
            "tags": tags or [],
            "updated_at": _now(),
        }
        self.comments[ticket_id] = []

    def route(self, seen: Seen) -> Reply:
        match = TICKET_PATH.match(seen.path)
        if not match or not match["id"].isdigit() or int(match["id"]) not in self.tickets:
            return NOT_FOUND
        ticket = self.tickets[int(match["id"])]
        if seen.method == "GET":
            body: dict[str, Any] = {"ticket": dict(ticket)}
            if "users" in seen.query.get("include", ""):
                body["users"] = [self.users[ticket["requester_id"]]] if ticket["requester_id"] in self.users else []
            return Reply(200, body)
        if seen.method == "PUT":
            return self._update(ticket, (seen.body or {}).get("ticket") if isinstance(seen.body, dict) else None)
        return Reply(405, {"error": "MethodNotAllowed"})

    def _update(self, ticket: dict[str, Any], changes: Any) -> Reply:
        if not isinstance(changes, dict):
            return Reply(400, {"error": "InvalidEndpoint", "description": "ticket object expected"})
        if ticket["status"] == "closed":
            return Reply(422, {"error": "RecordInvalid", "description": "Status: closed prevents ticket update"})
        status = changes.get("status")
        if status is not None and status not in STATUSES:
            return Reply(422, {"error": "RecordInvalid", "description": f"Status: {status} is not valid"})
        events: list[dict[str, Any]] = []
        if status is not None and status != ticket["status"]:
            events.append({"id": self._id(), "type": "Change", "field_name": "status", "value": status, "previous_value": ticket["status"]})
            ticket["status"] = status
        comment = changes.get("comment")
        if isinstance(comment, dict) and comment.get("body"):
            stored = {"id": self._id(), "type": "Comment", "body": comment["body"], "public": bool(comment.get("public", True))}
            self.comments[ticket["id"]].append(stored)
            events.append(stored)
        ticket["updated_at"] = _now()
        return Reply(200, {"ticket": dict(ticket), "audit": {"id": self._id(), "ticket_id": ticket["id"], "events": events}})

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id
