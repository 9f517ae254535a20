"""The top-level folders keep the design's names (`server/`, `operator/`, `models/`), yet none
of them may shadow a standard-library module for a Python started in the repository root:
`python -m pip` in a fresh virtual environment (the first step of `make venv`) puts the root
first on sys.path, and `collections` imports `operator` before any `site` module has."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
# The wheel the Dockerfile's `pip install --no-deps .` builds; offline, with the venv's setuptools.
PIP_WHEEL = (sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q")
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


def test_the_wheel_ships_every_module_and_data_file_of_the_three_packages(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The image installs the project as a wheel (not editable): the upload page, the OpenAPI
    document and the zoo's npm pins and scripts must be in it, under the import names."""
    setuptools_build_dir = ROOT / "build"
    if not setuptools_build_dir.exists():
        request.addfinalizer(lambda: shutil.rmtree(setuptools_build_dir, ignore_errors=True))
    done = subprocess.run(
        [*PIP_WHEEL, ".", "-w", str(tmp_path / "dist")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("modelzoo-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "server", "operator", "models"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    package_of = {
        "server/modelzoo_server/": "modelzoo_server/",
        "operator/modelzoo_operator/": "modelzoo_operator/",
        "models/modelzoo_models/": "modelzoo_models/",
    }
    expected = {
        package_of[prefix] + path.removeprefix(prefix)
        for path in tracked
        for prefix in package_of
        if path.startswith(prefix)
    }
    assert expected and not expected - shipped
