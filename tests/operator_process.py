"""Start the real operator (`python -m modelzoo_operator`) as a local process against a
kubeconfig, wait for its health endpoint, and stop it: the one launcher of the e2e tests
and the benchmark."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.servers import free_port, stop, wait_ready

# The zoo entries a test cluster's models may name (the chart's default set).
ZOO_ENTRIES = "mtcnn,mobilenet,centernet,nsfw,emotion"


def start_operator(kubeconfig: Path, workdir: Path, env: dict[str, str]) -> subprocess.Popen:
    """The operator with `workdir` as its home and cwd, its output appended to
    `workdir/operator.log`, and only these settings (`env` on top of the defaults here):
    no credentials leak in from the caller's environment. Returns once /healthz answers;
    an operator that exits or never gets healthy fails here, with its log."""
    port, metrics_port = free_port(), free_port()
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "KUBECONFIG": str(kubeconfig),
        "MODELZOO_OPERATOR_ZOO_ENTRIES": ZOO_ENTRIES,
        "MODELZOO_OPERATOR_HEALTH_PORT": str(port),
        "MODELZOO_OPERATOR_METRICS_PORT": str(metrics_port),
        **env,
    }
    log = workdir / "operator.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelzoo_operator"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=workdir,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, log, timeout=120, path="/healthz")
    except BaseException:
        stop(process, grace=5)
        raise
    return process


@contextlib.contextmanager
def run_operator(
    kubeconfig: Path, workdir: Path, env: dict[str, str], grace: float = 30
) -> Iterator[subprocess.Popen]:
    """`start_operator`, stopped (SIGTERM, then SIGKILL after `grace` s) on exit."""
    process = start_operator(kubeconfig, workdir, env)
    try:
        yield process
    finally:
        stop(process, grace=grace)
