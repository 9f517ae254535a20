"""Fixtures shared by every tier: the built zoo and real servers around it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from modelzoo_models import run_recipes, store
from modelzoo_server.__main__ import build_model
from modelzoo_server.app import create_app
from modelzoo_server.metrics import Metrics
from modelzoo_server.model import ServedModel
from modelzoo_server.settings import Settings, parse_settings
from tests.servers import RunningServer, run_server


@pytest.fixture(scope="session")
def zoo_dir() -> Path:
    """The folder with the built zoo graphs and catalog.json (built on first use)."""
    return run_recipes.build(store.model_dir()).parent


def settings_for(zoo_dir: Path, *extra: str, zoo: str = "mtcnn") -> Settings:
    return parse_settings(["--zoo", zoo, "--model-dir", str(zoo_dir), *extra], env={})


@pytest.fixture(scope="session")
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(4, thread_name_prefix="test-infer")
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture(scope="session")
def mtcnn_settings(zoo_dir: Path) -> Settings:
    return settings_for(zoo_dir, "--max-body-bytes", str(4 << 20), "--max-pixels", "4000000")


@pytest.fixture(scope="session")
def mtcnn_model(mtcnn_settings: Settings, executor: ThreadPoolExecutor) -> ServedModel:
    """Loaded once per session; tests that read metrics compare before and after."""
    return build_model(mtcnn_settings, Metrics(), executor)


@pytest.fixture
async def mtcnn_client(aiohttp_client, mtcnn_settings: Settings, mtcnn_model: ServedModel):
    return await aiohttp_client(create_app(mtcnn_settings, mtcnn_model))


@pytest.fixture(scope="module")
def mtcnn_server(zoo_dir: Path, tmp_path_factory) -> Iterator[RunningServer]:
    """The real `modelzoo-server` process, for outside clients (tritonclient, Chromium)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with run_server(["--zoo", "mtcnn", "--model-dir", str(zoo_dir)], log) as server:
        yield server
