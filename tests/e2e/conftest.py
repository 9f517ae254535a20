"""e2e fixtures: real control planes (tests/cluster/harness.py), the chart installed on
them, and the operator as a local process with the chart's ServiceAccount.

`cluster` builds the pinned binaries if they are missing (tests/cluster/build.sh,
cached outside git), brings a kwok cluster up on 127.0.0.1 in a fresh temp dir,
yields it, and always tears it down. The object it yields has:

  .kubeconfig   Path of an admin kubeconfig
  .bin          Path of the bin dir (kubectl, helm, kwokctl, kube-apiserver, ...)
  .kubectl(*args, check=True, timeout=180, input=None) -> subprocess.CompletedProcess (text)
  .helm(*args, check=True, timeout=300) -> subprocess.CompletedProcess (text)

`audited` is a second, private cluster (tests/e2e/audit.py). Nothing here skips: a
missing binary is built, a failure fails.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cluster import harness
from tests.e2e.audit import AUDIT_POLICY, AUDITED_VALUES, AuditedCluster
from tests.e2e.operators import ROOT, Chart, LocalOperator, install_chart, write_sa_kubeconfig


def _binaries(request) -> Path:
    # Show build.sh's progress live (a cold build takes a while), not captured.
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        return harness.ensure_binaries()


def _fresh_namespace(cluster, prefix: str) -> Iterator[str]:
    """A new namespace, deleted afterwards (without waiting)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture(scope="session")
def cluster(request):
    # A SIGTERM (CI timeout, kill) becomes a KeyboardInterrupt so pytest still
    # runs this fixture's teardown and no control-plane process is left behind.
    def _on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        with harness.session(bin=_binaries(request)) as c:
            yield c
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def namespace(cluster) -> Iterator[str]:
    """A fresh namespace per test."""
    yield from _fresh_namespace(cluster, "t")


@pytest.fixture(scope="session")
def chart(cluster) -> Chart:
    return install_chart(cluster)


@pytest.fixture(scope="session")
def sa_kubeconfig(cluster, chart, tmp_path_factory) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount, and nothing else."""
    path = tmp_path_factory.mktemp("operator") / "kubeconfig"
    write_sa_kubeconfig(cluster, chart, path)
    return path


@pytest.fixture(scope="session")
def operator(chart, sa_kubeconfig, tmp_path_factory) -> Iterator[LocalOperator]:
    """One operator for the session's cluster (tests that kill or stop it start it again)."""
    running = LocalOperator(sa_kubeconfig, tmp_path_factory.mktemp("operator-run"), chart.peering)
    running.start(priority=100)
    try:
        yield running
    finally:
        running.stop()
        # Keep the log where CI collects artifacts.
        artifacts = ROOT / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        (artifacts / "e2e-operator.log").write_text(running.output())


@pytest.fixture(scope="session")
def audited(request, tmp_path_factory) -> Iterator[AuditedCluster]:
    workdir = tmp_path_factory.mktemp("audited")
    policy = workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    with harness.session(bin=_binaries(request), audit_policy=policy) as cluster:
        yield AuditedCluster(cluster, install_chart(cluster, *AUDITED_VALUES), workdir)


@pytest.fixture
def audited_namespace(audited) -> Iterator[str]:
    """A fresh namespace per test on the audited cluster."""
    yield from _fresh_namespace(audited.cluster, "a")
