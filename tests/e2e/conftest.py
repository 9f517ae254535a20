"""e2e fixtures: a real control plane (tests/cluster/harness.py) for the session.

`cluster` builds the pinned binaries if they are missing (tests/cluster/build.sh,
cached outside git), brings a kwok cluster up on 127.0.0.1 in a fresh temp dir,
yields it, and always tears it down. The object it yields has:

  .kubeconfig   Path of an admin kubeconfig
  .bin          Path of the bin dir (kubectl, helm, kwokctl, kube-apiserver, ...)
  .kubectl(*args, check=True, timeout=180, input=None) -> subprocess.CompletedProcess (text)
  .helm(*args, check=True, timeout=300) -> subprocess.CompletedProcess (text)

Nothing here skips: a missing binary is built, a failure fails.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from tests.cluster import harness

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cluster(request):
    # A SIGTERM (CI timeout, kill) becomes a KeyboardInterrupt so pytest still
    # runs this fixture's teardown and no control-plane process is left behind.
    def _on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        # Show build.sh's progress live (a cold build takes a while), not captured.
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            bin_dir = harness.ensure_binaries()
        with harness.session(bin=bin_dir) as c:
            yield c
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def namespace(cluster):
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
