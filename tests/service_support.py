"""The service under test: the real app under uvicorn on a free loopback port, with keys per role."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from agent.runtime import Runtime
from agent.service.app import create_app
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
