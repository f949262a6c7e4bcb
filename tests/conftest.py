"""Shared fixtures: isolated data folders, and the real models loaded once per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.models.local import LocalModel
from agent.runner import Runner
from agent.runtime import Runtime
from agent.settings import Settings, load_settings
from tools.embeddings import SentenceTransformerEmbedder
from tools.sandbox.seed import seed_demo

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_settings(data_dir: Path, **env: str) -> Settings:
    """Settings as the CLI would load them, with the data folder (and extras) overridden."""
    return load_settings(env={"CASEPLAN_DATA_DIR": str(data_dir), **env})


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def local_model() -> LocalModel:
    return LocalModel(load_settings(env={}).local_model)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def runtime(settings: Settings, embedder: SentenceTransformerEmbedder, local_model: LocalModel) -> Iterator[Runtime]:
    built = Runtime.build(settings, embedder=embedder, local_model=local_model)
    seed_demo(built.sandbox)
    yield built
    built.engine.dispose()


@pytest.fixture
def runner(runtime: Runtime) -> Runner:
    return Runner(runtime)
