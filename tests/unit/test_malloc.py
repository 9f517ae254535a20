"""The server's glibc malloc thresholds: set on glibc, left to the environment when it
says what it wants."""

from __future__ import annotations

import subprocess
import sys

import pytest

from modelzoo_server import malloc

pytestmark = pytest.mark.unit


def _in_a_fresh_process(env: dict[str, str]) -> str:
    # mallopt changes the whole process: not this test runner's.
    code = "from modelzoo_server.malloc import keep_freed_memory; print(keep_freed_memory())"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_glibc_takes_the_thresholds() -> None:
    said = _in_a_fresh_process({})
    assert said.startswith("malloc keeps freed blocks below 32 MiB"), said


@pytest.mark.parametrize("variable", ["MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"])
def test_the_environment_wins(monkeypatch, variable: str) -> None:
    monkeypatch.setenv(variable, "1048576")
    monkeypatch.setattr(malloc.ctypes, "CDLL", None)  # would fail if it were called
    assert malloc.keep_freed_memory() == "malloc thresholds from the environment"
