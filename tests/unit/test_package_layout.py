"""The top-level folders keep the design's names (`server/`, `operator/`, `models/`), yet none
of them may shadow a standard-library module for a Python started in the repository root:
`python -m pip` in a fresh virtual environment (the first step of `make venv`) puts the root
first on sys.path, and `collections` imports `operator` before any `site` module has."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_FOLDERS = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and p.name.isidentifier())


def stdlib_file(module: str, cwd: Path) -> str:
    """Where `module` comes from in a bare interpreter (-S: no site, as in a fresh venv)."""
    probe = f"import {module}; print(getattr({module}, '__file__', 'built-in'))"
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    "folder", [f for f in TOP_LEVEL_FOLDERS if f in sys.stdlib_module_names], ids=str
)
def test_a_folder_named_like_a_stdlib_module_does_not_shadow_it(folder: str) -> None:
    origin = stdlib_file(folder, ROOT)
    assert not origin.startswith(str(ROOT)), f"`import {folder}` in the repo root gets {origin}"
    assert origin == "built-in" or origin.startswith(sysconfig.get_paths()["stdlib"])


def test_the_operator_folder_is_among_the_checked_folders() -> None:
    assert "operator" in sys.stdlib_module_names and "operator" in TOP_LEVEL_FOLDERS


def test_runpy_starts_from_the_repo_root_without_site() -> None:
    done = subprocess.run(
        [sys.executable, "-S", "-m", "json.tool", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
