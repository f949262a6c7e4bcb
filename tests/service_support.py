"""The service under test: the real app under uvicorn on a free loopback port, with keys (and console sessions) per role."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

from agent.runtime import Runtime
from agent.service.app import create_app
from agent.service.auth import COOKIE
from agent.service.console_forms import TOKEN_FIELD, form_token
from agent.service.keys import KeyStore
from agent.service.models import ROLES
from agent.service.server import background_server


@dataclass
class Service:
    url: str
    runtime: Runtime
    keys: dict[str, str] = field(default_factory=dict)  # role -> secret

    def client(self, role: str | None = None, **headers: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return httpx.Client(base_url=self.url, headers={**auth, **headers}, timeout=120)

    sessions: dict[str, str] = field(default_factory=dict)  # role -> console session token

    def session(self, role: str) -> str:
        """This role's console session token, as logging in sets it in the cookie (one per role)."""
        if role not in self.sessions:
            keys = KeyStore(self.runtime.engine)
            self.sessions[role] = keys.open_session(keys.verify(self.keys[role]), timedelta(hours=1))
        return self.sessions[role]

    def browser(self, role: str) -> httpx.Client:
        """A console session as after logging in: the session token in the cookie, no key."""
        client = self.client(None)
        client.cookies.set(COOKIE, self.session(role))
        return client

    def form(self, role: str, **fields: str) -> dict[str, str]:
        """A console form's fields with the token its page carries for this role's session."""
        return {TOKEN_FIELD: form_token(self.session(role)), **fields}

    def wait_for_run(self, run_id: str, statuses: tuple[str, ...], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        with self.client("admin") as client:
            while True:
                body = client.get(f"/v1/runs/{run_id}").json()
                if body["status"] in statuses or time.monotonic() > deadline:
                    return body
                time.sleep(0.1)


@contextmanager
def serve(runtime: Runtime, *, workers: int = 1) -> Iterator[Service]:
    """Run the app under uvicorn in a thread until the block ends; one key per role."""
    with background_server(create_app(runtime, workers=workers)) as url:
        store = KeyStore(runtime.engine)
        yield Service(url=url, runtime=runtime, keys={role: store.create(role, f"test-{role}")[1] for role in ROLES})


def approval_policy(tmp_path: Path) -> str:
    """policies.files (as an environment override) making every password reset wait for a person."""
    policy = tmp_path / "approve_resets.yaml"
    policy.write_text("version: 1\nrules:\n  - {id: reset-approval, tools: [password_reset], decision: needs_approval, reason: a person confirms}\n")
    return f"[{policy}]"
