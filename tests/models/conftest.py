"""Fixtures for a test module about one zoo entry: set `ZOO_ENTRY = "name"` in the module."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelzoo_server.model_entry import ModelEntry, from_catalog
from modelzoo_server.runtime import GraphModel, load_graph
from modelzoo_server.tasks import TASKS, Task


@pytest.fixture(scope="module")
def entry(request: pytest.FixtureRequest, zoo_dir: Path) -> ModelEntry:
    return from_catalog(zoo_dir, request.module.ZOO_ENTRY)


@pytest.fixture(scope="module")
def model(entry: ModelEntry) -> GraphModel:
    """The built graph, loaded the way the server loads it (checked, then imported)."""
    return load_graph(entry.path, entry.signature, entry.sha256)


@pytest.fixture(scope="module")
def task(entry: ModelEntry) -> Task:
    return TASKS[entry.task](entry)
