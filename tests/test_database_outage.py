"""The record's database goes away and comes back, on a real PostgreSQL server: the API answers
503 with Retry-After (never a 500) and stores nothing half-way, the CLI prints one line, the
workers survive, and everything stored before the outage is still there afterwards.

The outage is real: the test's own database stops accepting connections
(`ALTER DATABASE ... ALLOW_CONNECTIONS false`) and its open connections are terminated."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from typer.testing import CliRunner

from agent.cli import app
from agent.runtime import Runtime
from tests.conftest import make_settings
from tests.service_support import serve
from tools.sandbox.seed import seed_demo

SERVER_URL = os.environ.get("CASEPLAN_TEST_DATABASE_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STATUS = {"text": "Any update on ticket #1002?", "requester_email": "li.wei@example.com"}

pytestmark = pytest.mark.slow


def _admin():  # noqa: ANN202
    engine = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        engine.dispose()
        pytest.skip(f"no PostgreSQL server at {make_url(SERVER_URL).render_as_string()} to take down: {str(exc.orig).splitlines()[0]}")
    return engine


@pytest.fixture
def outage_database() -> Iterator[tuple[str, Callable[[bool], None]]]:
    """A database of its own (so the outage touches nothing else), and a switch for the outage."""
    admin = _admin()
    name = f"caseplan_outage_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))

    def available(on: bool) -> None:
        with admin.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {name} ALLOW_CONNECTIONS {'true' if on else 'false'}"))
            if not on:
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name})

    try:
        yield make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False), available
    finally:
        available(True)
        with admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"), {"name": name})
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()


def test_the_api_answers_503_while_the_database_is_down_and_loses_nothing(tmp_path, outage_database, embedder, local_model):
    url, available = outage_database
    runtime = Runtime.build(make_settings(tmp_path / "data", CASEPLAN__DATABASE__URL=url), embedder=embedder, local_model=local_model)
    seed_demo(runtime.sandbox)
    with serve(runtime) as service, service.client("admin") as admin, service.client("platform") as platform:
        first = platform.post("/v1/tickets", json=STATUS, headers={"Idempotency-Key": "before"}).json()["run_id"]
        before = service.wait_for_run(first, ("completed", "escalated", "failed"))
        assert before["status"] == "completed"

        available(False)
        for response in (
            admin.get(f"/v1/runs/{first}"),
            admin.get("/v1/runs"),
            platform.post("/v1/tickets", json=STATUS, headers={"Idempotency-Key": "during"}),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "database is unavailable" in response.json()["detail"]

        available(True)
        assert admin.get(f"/v1/runs/{first}").json() == before  # what was stored is all still there
        retried = platform.post("/v1/tickets", json=STATUS, headers={"Idempotency-Key": "during"})
        assert retried.status_code == 202, retried.text  # the refused request left nothing behind to collide with
        assert service.wait_for_run(retried.json()["run_id"], ("completed", "escalated", "failed"))["status"] == "completed"


def test_the_cli_prints_one_line_when_the_database_is_down(tmp_path, outage_database, monkeypatch):
    url, available = outage_database
    monkeypatch.setenv("CASEPLAN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CASEPLAN__DATABASE__URL", url)
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    up = runner.invoke(app, ["audit", "list"])
    assert up.exit_code == 0, up.output
    available(False)
    down = runner.invoke(app, ["audit", "list"])
    assert down.exit_code == 2 and isinstance(down.exception, SystemExit), down.exception
    lines = down.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the database cannot be used ("), down.output
    assert "is not currently accepting connections" in lines[0]  # the driver's own reason, on one line
