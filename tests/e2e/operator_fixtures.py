"""e2e fixtures for the operator: the chart installed once per session, and the operator
running as a LOCAL process (kopf in a subprocess) with ONLY the chart's ServiceAccount
credentials (a kubeconfig built from a token minted by `kubectl create token`), so the
chart's RBAC is what the operator gets.

Test modules import these fixtures: `from tests.e2e.operator_fixtures import *`. A fixture
imported into several modules is a separate fixture definition in each, so the session
fixtures below keep one shared instance per cluster (`_SHARED`): one install, one
operator process, whichever module asks first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelzoo"
EXAMPLE = ROOT / "docs" / "examples" / "modelzoo.yaml"
RELEASE, RELEASE_NAMESPACE = "mz", "modelzoo-system"
SERVICE_ACCOUNT = f"{RELEASE}-modelzoo"  # the chart's fullname
PEERING = f"{RELEASE}-modelzoo"
ZOO_ENTRIES = "mtcnn,mobilenet,centernet,nsfw,emotion"
DRIFT_INTERVAL = 5  # seconds: the drift sweep, short so hand edits are undone quickly
WAIT = "180s"  # kubectl wait timeouts on a busy 2-core machine

T = TypeVar("T")
_SHARED: dict[tuple[str, str], Any] = {}

__all__ = [
    "DRIFT_INTERVAL",
    "EXAMPLE",
    "RELEASE",
    "RELEASE_NAMESPACE",
    "SERVICE_ACCOUNT",
    "WAIT",
    "LocalOperator",
    "apply",
    "chart",
    "eventually",
    "get_json",
    "operator",
    "sa_kubeconfig",
    "zoo_manifest",
]


def eventually(check: Callable[[], T], timeout: float = 120.0, what: str = "") -> T:
    """Poll `check` (which reads the cluster) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (subprocess.CalledProcessError, KeyError, IndexError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")


def get_json(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


def apply(cluster, namespace: str, obj: dict, check: bool = True) -> subprocess.CompletedProcess:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=check)


def zoo_manifest(name: str, *models: dict) -> dict:
    return {
        "apiVersion": "modelzoo.dev/v1alpha1",
        "kind": "ModelZoo",
        "metadata": {"name": name},
        "spec": {"models": list(models)},
    }


@dataclass
class Chart:
    release: str
    namespace: str
    service_account: str
    peering: str


def _shared(cluster, name: str, make: Callable[[], T]) -> T:
    key = (str(cluster.kubeconfig), name)
    if key not in _SHARED:
        _SHARED[key] = make()
    return _SHARED[key]


@pytest.fixture(scope="session")
def chart(cluster) -> Chart:
    """`helm install` of charts/modelzoo (CRDs, RBAC, the operator Deployment, peering)."""

    def install() -> Chart:
        cluster.helm(
            "install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--create-namespace",
            "--wait", "--timeout", "240s",
        )  # fmt: skip
        return Chart(RELEASE, RELEASE_NAMESPACE, SERVICE_ACCOUNT, PEERING)

    return _shared(cluster, "chart", install)


@pytest.fixture(scope="session")
def sa_kubeconfig(cluster, chart, tmp_path_factory) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount, and nothing else."""
    return _shared(cluster, "kubeconfig", lambda: _sa_kubeconfig(cluster, chart, tmp_path_factory))


def _sa_kubeconfig(cluster, chart: Chart, tmp_path_factory) -> Path:
    token = cluster.kubectl(
        "create", "token", chart.service_account, "-n", chart.namespace, "--duration", "4h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    (entry,) = [c for c in admin["clusters"]]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [entry],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [
            {"name": "operator", "context": {"cluster": entry["name"], "user": "operator"}}
        ],
        "current-context": "operator",
    }
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalOperator:
    """`python -m modelzoo_operator` as the chart's ServiceAccount, with the chart's peering."""

    kubeconfig: Path
    workdir: Path
    peering: str
    process: subprocess.Popen | None = None
    port: int = 0
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.workdir / "operator.log"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, priority: int) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        self.port = _free_port()
        self.env = {
            # Only what the operator needs; no admin credentials leak in from the tests.
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.workdir),
            "KUBECONFIG": str(self.kubeconfig),
            "MODELZOO_OPERATOR_PEERING": self.peering,
            "MODELZOO_OPERATOR_PEERING_PRIORITY": str(priority),
            # Unique per process: peers with one identity would take each other for themselves.
            "MODELZOO_OPERATOR_IDENTITY": f"e2e-{self.workdir.name}-{self.starts}",
            "MODELZOO_OPERATOR_ZOO_ENTRIES": ZOO_ENTRIES,
            "MODELZOO_OPERATOR_DRIFT_INTERVAL": str(DRIFT_INTERVAL),
            "MODELZOO_OPERATOR_HEALTH_PORT": str(self.port),
            "MODELZOO_OPERATOR_IMAGE": "registry.invalid/modelzoo:e2e",
            "MODELZOO_OPERATOR_GPU_IMAGE": "registry.invalid/modelzoo:e2e-gpu",
        }
        with self.log.open("ab") as sink:
            sink.write(f"\n===== start #{self.starts} (priority {priority})\n".encode())
            sink.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modelzoo_operator"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.workdir,
            )
        url = f"http://127.0.0.1:{self.port}/healthz"

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the operator exited:\n{self.output()[-4000:]}")
            with suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
            return False

        eventually(healthy, 120, "the operator's health endpoint")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye to its peers (as if the node died)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def identity(self) -> str:
        return self.env.get("MODELZOO_OPERATOR_IDENTITY", "")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture(scope="session")
def operator(cluster, chart, sa_kubeconfig, tmp_path_factory) -> Iterator[LocalOperator]:
    def start() -> LocalOperator:
        workdir = tmp_path_factory.mktemp("operator-run")
        started = LocalOperator(sa_kubeconfig, workdir, chart.peering)
        started.start(priority=100)
        return started

    running = _shared(cluster, "operator", start)
    try:
        yield running
    finally:
        running.stop()
        # Keep the log where CI collects artifacts.
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "e2e-operator.log").write_text(running.output())
