"""e2e fixtures for the operator: the chart installed once per session, and the operator
running as a LOCAL process (kopf in a subprocess) with ONLY the chart's ServiceAccount
credentials (a kubeconfig built from a token minted by `kubectl create token`), so the
chart's RBAC is what the operator gets.

Test modules import these fixtures: `from tests.e2e.operator_fixtures import *`. A fixture
imported into several modules is a separate fixture definition in each, so the session
fixtures below keep one shared instance per cluster (`_SHARED`): one install, one
operator process, whichever module asks first.

`audited` is a second, private cluster for the tests that hurt the control plane
(test_operator_faults.py: API server restarted and paused) or need its audit log
(test_operator_rbac.py: what the operator's ServiceAccount actually did). Its chart is
installed with NetworkPolicies on; its operators are started per test or module.
"""

from __future__ import annotations

import base64
import datetime
import itertools
import json
import os
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

from tests.servers import free_port, stop

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
    "AUDITED_VALUES",
    "DRIFT_INTERVAL",
    "EXAMPLE",
    "OPERATOR_USER",
    "RELEASE",
    "RELEASE_NAMESPACE",
    "SERVICE_ACCOUNT",
    "WAIT",
    "AuditedCluster",
    "LocalOperator",
    "apply",
    "audited",
    "audited_namespace",
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
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    write_sa_kubeconfig(cluster, chart, path)
    return path


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
    port: int = 0
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
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        self.port = free_port()
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
            **self.extra_env,
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
        if self.process is not None:
            stop(self.process, grace=60)

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


# ---------------------------------------------------------------- the audited cluster
OPERATOR_USER = f"system:serviceaccount:{RELEASE_NAMESPACE}:{SERVICE_ACCOUNT}"
# Only the operator's ServiceAccount is recorded, at Metadata level (who, what, which
# object, the answer; never a body, so no Secret data either), once per request.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}],
}
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
AUDITED_VALUES = [
    "--set", "networkPolicy.enabled=true",
    "--set-json", f"networkPolicy.scrapeFrom={json.dumps([MONITORING])}",
]  # fmt: skip
# Peers with a higher priority pause the others: each operator started here outranks
# every earlier one (a killed one stays listed in the peering until its lifetime ends).
_PRIORITIES = itertools.count(1000)


def audit_stamp() -> str:
    """Now, in the audit log's timestamp format (comparable as strings)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class AuditedCluster:
    cluster: Any  # harness.Cluster
    chart: Chart
    workdir: Path

    @property
    def audit_log(self) -> Path:
        return self.cluster.audit_log

    def audit_events(self, since: str = "") -> list[dict]:
        """The operator's requests (one ResponseComplete-or-ResponseStarted event each,
        deduplicated by auditID), optionally those received at or after `since` (RFC 3339)."""
        seen: dict[str, dict] = {}
        for line in self.audit_log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:  # the line the API server is writing right now
                continue
            if event["user"]["username"] != OPERATOR_USER:
                continue
            if since and event["requestReceivedTimestamp"] < since:
                continue
            seen.setdefault(event["auditID"], event)
            if event["stage"] == "ResponseComplete":
                seen[event["auditID"]] = event
        return list(seen.values())

    def api_server_pid(self) -> int:
        return int((self.cluster.cluster_dir / "pids" / "kube-apiserver.pid").read_text())

    def chart_env(self) -> dict[str, str]:
        """The installed operator Deployment's MODELZOO_OPERATOR_* settings that the local
        operators take over from the chart (NetworkPolicy, the Secret check)."""
        deployment = get_json(self.cluster, "deployment", SERVICE_ACCOUNT, "-n", RELEASE_NAMESPACE)
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return {
            e["name"]: e["value"]
            for e in container["env"]
            if e["name"].startswith(("MODELZOO_OPERATOR_NETWORK_POLICY", "MODELZOO_OPERATOR_CHECK"))
        }

    @staticmethod
    def priority() -> int:
        """A peering priority above every one handed out before."""
        return next(_PRIORITIES)

    def operator(
        self, name: str, env: dict[str, str] | None = None, server: str = "", priority: int = 0
    ) -> tuple[LocalOperator, str]:
        """A started operator with its own token (and credential id) and the chart's settings;
        by default it outranks every operator started before it."""
        priority = priority or self.priority()
        workdir = self.workdir / f"{name}-{priority}"
        workdir.mkdir()
        jti = write_sa_kubeconfig(self.cluster, self.chart, workdir / "kubeconfig", server)
        started = LocalOperator(
            workdir / "kubeconfig",
            workdir,
            self.chart.peering,
            extra_env={**self.chart_env(), **(env or {})},
        )
        started.start(priority=priority)
        return started, jti


@pytest.fixture(scope="session")
def audited(request, tmp_path_factory) -> Iterator[AuditedCluster]:
    key = ("audited", "cluster")
    if key in _SHARED:
        yield _SHARED[key]
        return
    from tests.cluster import harness

    workdir = tmp_path_factory.mktemp("audited")
    policy = workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        bin_dir = harness.ensure_binaries()
    with harness.session(bin=bin_dir, audit_policy=policy) as cluster:
        cluster.helm(
            "install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--create-namespace",
            *AUDITED_VALUES, "--wait", "--timeout", "240s",
        )  # fmt: skip
        audited = AuditedCluster(
            cluster, Chart(RELEASE, RELEASE_NAMESPACE, SERVICE_ACCOUNT, PEERING), workdir
        )
        _SHARED[key] = audited
        try:
            yield audited
        finally:
            del _SHARED[key]


@pytest.fixture
def audited_namespace(audited) -> Iterator[str]:
    """A fresh namespace on the audited cluster, deleted afterwards (without waiting)."""
    name = f"a-{os.urandom(4).hex()}"
    audited.cluster.kubectl("create", "namespace", name)
    yield name
    audited.cluster.kubectl(
        "delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False
    )
