"""Shared fixtures: isolated data folders, and the real models loaded once per session."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from agent.models.local import LocalModel
from agent.runner import Runner
from agent.runtime import Runtime
from agent.settings import Settings, load_settings
from tools.embeddings import SentenceTransformerEmbedder
from tools.sandbox.seed import seed_demo

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Set (as .ci/run does) to run every record test against PostgreSQL as well as SQLite.
TEST_DATABASE_URL = os.environ.get("CASEPLAN_TEST_DATABASE_URL")


def make_settings(data_dir: Path, **env: str) -> Settings:
    """Settings as the CLI would load them, with the data folder (and extras) overridden."""
    return load_settings(env={"CASEPLAN_DATA_DIR": str(data_dir), **env})


@pytest.fixture
def database_env() -> Iterator[dict[str, str]]:
    """Empty on SQLite; on PostgreSQL, a fresh schema per test, dropped afterwards."""
    if not TEST_DATABASE_URL:
        yield {}
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(TEST_DATABASE_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield {"CASEPLAN__DATABASE__URL": url.render_as_string(hide_password=False)}
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def local_model() -> LocalModel:
    return LocalModel(load_settings(env={}).local_model)


@pytest.fixture
def settings(tmp_path: Path, database_env: dict[str, str]) -> Settings:
    return make_settings(tmp_path / "data", **database_env)


@pytest.fixture
def runtime(settings: Settings, embedder: SentenceTransformerEmbedder, local_model: LocalModel) -> Iterator[Runtime]:
    built = Runtime.build(settings, embedder=embedder, local_model=local_model)
    seed_demo(built.sandbox)
    yield built
    built.engine.dispose()


@pytest.fixture
def runner(runtime: Runtime) -> Runner:
    return Runner(runtime)


@pytest.fixture
def build(tmp_path: Path, database_env: dict[str, str], embedder: SentenceTransformerEmbedder, local_model: LocalModel) -> Iterator[Callable[..., Runtime]]:
    """A runtime over a fresh data folder with extra settings (environment-style overrides)."""
    built: list[Runtime] = []

    def make(**env: str) -> Runtime:
        runtime = Runtime.build(make_settings(tmp_path / "data", **database_env, **env), embedder=embedder, local_model=local_model)
        seed_demo(runtime.sandbox)
        built.append(runtime)
        return runtime

    yield make
    for runtime in built:
        runtime.engine.dispose()
