"""An Okta-style users API: search by profile email, `GET /api/v1/users/{id}`, and
`POST /api/v1/users/{id}/lifecycle/reset_password` (sendEmail, revokeSessions), with SSWS auth."""

from __future__ import annotations

import re
from typing import Any

from tests.servers.base import FakeApi, Reply, Seen

USER_PATH = re.compile(r"^/api/v1/users/(?P<id>[^/]+)$")
RESET_PATH = re.compile(r"^/api/v1/users/(?P<id>[^/]+)/lifecycle/reset_password$")
SEARCH = re.compile(r'^profile\.email eq "(?P<email>[^"]+)"$')


def not_found(user_id: str) -> Reply:
    return Reply(404, {"errorCode": "E0000007", "errorSummary": f"Not found: Resource not found: {user_id} (User)"})


class OktaApi(FakeApi):
    def __init__(self, auth: str | None = None) -> None:
        super().__init__(auth)
        self.users: dict[str, dict[str, Any]] = {}
        self.resets: list[dict[str, Any]] = []  # what the provider did: one entry per reset email sent

    def add_user(self, user_id: str, email: str, first: str, last: str, status: str = "ACTIVE") -> None:
        profile = {"email": email, "login": email, "firstName": first, "lastName": last}
        self.users[user_id] = {"id": user_id, "status": status, "profile": profile, "_links": {}}

    def route(self, seen: Seen) -> Reply:
        if seen.method == "GET" and seen.path == "/api/v1/users":
            match = SEARCH.match(seen.query.get("search", ""))
            if not match:
                return Reply(400, {"errorCode": "E0000031", "errorSummary": "Invalid search."})
            wanted = match["email"].lower()
            return Reply(200, [u for u in self.users.values() if u["profile"]["email"].lower() == wanted])
        if (match := USER_PATH.match(seen.path)) and seen.method == "GET":
            user = self.users.get(match["id"])
            return Reply(200, user) if user else not_found(match["id"])
        if (match := RESET_PATH.match(seen.path)) and seen.method == "POST":
            user = self.users.get(match["id"])
            if user is None:
                return not_found(match["id"])
            if user["status"] not in ("ACTIVE", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT"):
                return Reply(403, {"errorCode": "E0000038", "errorSummary": "This operation is not allowed in the user's current status."})
            user["status"] = "RECOVERY"
            send_email = seen.query.get("sendEmail") == "true"
            self.resets.append({"user_id": user["id"], "send_email": send_email, "revoke_sessions": seen.query.get("revokeSessions") == "true"})
            return Reply(200, {} if send_email else {"resetPasswordUrl": f"https://okta.test/reset/{user['id']}"})
        return Reply(404, {"errorCode": "E0000022", "errorSummary": "The endpoint does not support the provided HTTP method"})
