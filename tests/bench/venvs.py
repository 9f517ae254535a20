"""The peers' own virtual environments, created once under the cache and reused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from modelzoo_models.store import cache_root

KSERVE_VERSION = "0.21.0"
# KServe's model file loads the frozen graph itself, so its venv needs TensorFlow too;
# py-spy samples KServe's process from outside (kserve_profile.py).
KSERVE_REQUIREMENTS = (f"kserve=={KSERVE_VERSION}", "tensorflow-cpu==2.21.0", "py-spy==0.4.3")
_STAMP = ".modelzoo-bench-complete"


def bench_cache() -> Path:
    return cache_root() / "bench"


def kserve_venv() -> Path:
    return bench_cache() / f"kserve-{KSERVE_VERSION}"


def _stamp_text() -> str:
    return "\n".join(KSERVE_REQUIREMENTS) + "\n"


def kserve_python() -> Path | None:
    """The KServe venv's interpreter, or None when the venv is not built (completely, and
    with today's requirements: a venv from an older list is built again)."""
    venv = kserve_venv()
    python, stamp = venv / "bin" / "python", venv / _STAMP
    current = stamp.exists() and stamp.read_text() == _stamp_text()
    return python if current and python.exists() else None


def py_spy(python: Path) -> Path:
    """py-spy's binary in the venv of `python`."""
    return python.parent / "py-spy"


def ensure_kserve_venv(log: Callable[[str], None] = print) -> Path:
    """Create the KServe venv if needed (minutes, once); return its interpreter."""
    python = kserve_python()
    if python is not None:
        return python
    venv = kserve_venv()
    shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted run
    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"creating KServe's venv {venv} ({', '.join(KSERVE_REQUIREMENTS)}): once, minutes")
    # Run outside the repo: its `operator/` folder would shadow the standard library.
    run = {"check": True, "cwd": venv.parent, "env": {**os.environ, "PIP_NO_INPUT": "1"}}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], **run)
    pip = [str(venv / "bin" / "python"), "-P", "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], **run)
    subprocess.run([*pip, "install", "--progress-bar", "off", *KSERVE_REQUIREMENTS], **run)
    (venv / _STAMP).write_text(_stamp_text())
    return venv / "bin" / "python"
