"""The chart's release on a test cluster, and the operator running as a LOCAL process
(tests/operator_process.py) with ONLY the chart's ServiceAccount credentials (a
kubeconfig built from a token minted by `kubectl create token`), so the chart's RBAC is
what the operator gets."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.operator_process import start_operator
from tests.servers import stop

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelzoo"
RELEASE, RELEASE_NAMESPACE = "mz", "modelzoo-system"
SERVICE_ACCOUNT = f"{RELEASE}-modelzoo"  # the chart's fullname
PEERING = f"{RELEASE}-modelzoo"
DRIFT_INTERVAL = 5  # seconds: the drift sweep, short so hand edits are undone quickly


@dataclass
class Chart:
    release: str
    namespace: str
    service_account: str
    peering: str


def install_chart(cluster, *values: str) -> Chart:
    """`helm install` of charts/modelzoo (CRDs, RBAC, the operator Deployment, peering)."""
    cluster.helm(
        "install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--create-namespace",
        *values, "--wait", "--timeout", "240s",
    )  # fmt: skip
    return Chart(RELEASE, RELEASE_NAMESPACE, SERVICE_ACCOUNT, PEERING)


def write_sa_kubeconfig(cluster, chart: Chart, path: Path, server: str = "") -> str:
    """Write a kubeconfig for a freshly minted token of the chart's ServiceAccount (optionally
    through another `server` URL, e.g. a proxy); return the token's id (its JWT `jti`),
    which the API server's audit log records as the credential id."""
    token = cluster.kubectl(
        "create", "token", chart.service_account, "-n", chart.namespace, "--duration", "4h"
    ).stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    (entry,) = [c for c in admin["clusters"]]
    if server:
        entry = {**entry, "cluster": {**entry["cluster"], "server": server}}
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
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


@dataclass
class LocalOperator:
    """`python -m modelzoo_operator` as the chart's ServiceAccount, with the chart's peering."""

    kubeconfig: Path
    workdir: Path
    peering: str
    process: subprocess.Popen | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)
    # Settings on top of the defaults below (the chart's NetworkPolicy values, timeouts).
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.workdir / "operator.log"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self, priority: int) -> None:
        assert not self.alive(), "already running"
        self.starts += 1
        self.env = {
            "MODELZOO_OPERATOR_PEERING": self.peering,
            "MODELZOO_OPERATOR_PEERING_PRIORITY": str(priority),
            # Unique per process: peers with one identity would take each other for themselves.
            "MODELZOO_OPERATOR_IDENTITY": f"e2e-{self.workdir.name}-{self.starts}",
            "MODELZOO_OPERATOR_DRIFT_INTERVAL": str(DRIFT_INTERVAL),
            "MODELZOO_OPERATOR_IMAGE": "registry.invalid/modelzoo:e2e",
            "MODELZOO_OPERATOR_GPU_IMAGE": "registry.invalid/modelzoo:e2e-gpu",
            **self.extra_env,
        }
        # One log for all of this operator's starts, each under its own header.
        with self.log.open("ab") as sink:
            sink.write(f"\n===== start #{self.starts} (priority {priority})\n".encode())
        self.process = start_operator(self.kubeconfig, self.workdir, self.env)

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye to its peers (as if the node died)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process, grace=60)

    @property
    def identity(self) -> str:
        return self.env.get("MODELZOO_OPERATOR_IDENTITY", "")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None
