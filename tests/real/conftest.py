"""The `real` tier's fixtures: the test cluster with its real node (containerd + kubelet,
tests/cluster/realnode.py) and the project's image built by `make image` loaded into it.

Nothing here skips: a machine that cannot run the real node fails the tier with one
line naming what is missing (not root, a Debian package, the image).
"""

from __future__ import annotations

import json
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import harness, realnode

ROOT = Path(__file__).resolve().parents[2]
IMAGE_SH = ROOT / "tests" / "cluster" / "image.sh"
IMAGE = "localhost/modelzoo:dev"
RELEASE = "modelzoo"
OPERATOR_NS = "modelzoo-system"
# What a pod needs to land on the real node (the chart's and the ModelZoo's own fields).
NODE_SELECTOR = {realnode.LABEL_KEY: realnode.LABEL_VALUE}
TOLERATION = {**realnode.TAINT, "operator": "Equal"}


def image_archive() -> Path:
    """The archive `make image` saved for the node's containerd (fails the tier if none)."""
    proc = subprocess.run(
        ["bash", str(IMAGE_SH), "--print-archive"], capture_output=True, text=True, check=False
    )
    path = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    if proc.returncode != 0 or not path or not path.exists():
        pytest.fail(f"real node: no image archive of {IMAGE} (run `make image`)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def real_cluster(request):
    def _on_term(signum, frame):  # teardown still runs on SIGTERM (CI timeout)
        raise KeyboardInterrupt(f"signal {signum}")

    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        bin = harness.ensure_binaries()
        archive = image_archive()
    try:
        realnode.preflight(bin)
    except realnode.RealNodeMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        # The session's teardown fails if the node leaves a process, mount, netns,
        # veth, route or cgroup behind (Cluster.down -> RealNode.leftovers).
        with harness.session(bin=bin, real_node=True, images=[archive]) as c:
            yield c
    finally:
        signal.signal(signal.SIGTERM, previous)


def pin_namespace(cluster, name: str, labels: dict[str, str] | None = None, pin=True) -> None:
    """Create `name`; every pod in it lands on the real node (PodNodeSelector and
    PodTolerationRestriction, which the harness enables with the real node): also pods a
    chart cannot place, such as `helm test`'s Job."""
    doc = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": labels or {},
        },
    }
    if pin:
        doc["metadata"]["annotations"] = {
            "scheduler.alpha.kubernetes.io/node-selector": (
                f"{realnode.LABEL_KEY}={realnode.LABEL_VALUE}"
            ),
            "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([TOLERATION]),
        }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))


@pytest.fixture(scope="session")
def chart(real_cluster) -> str:
    """charts/modelzoo installed with the built image, aimed at the real node with the
    chart's own nodeSelector/tolerations values. Returns the release's namespace."""
    pin_namespace(real_cluster, OPERATOR_NS)
    repo, _, tag = IMAGE.rpartition(":")
    real_cluster.helm(
        "install", RELEASE, ROOT / "charts" / "modelzoo", "-n", OPERATOR_NS,
        "--set", f"image.repository={repo}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=IfNotPresent",
        "--set", r"nodeSelector.modelzoo\.dev/node=real",
        "--set", f"tolerations[0].key={realnode.LABEL_KEY}",
        "--set", "tolerations[0].operator=Equal",
        "--set", f"tolerations[0].value={realnode.LABEL_VALUE}",
        "--set", "tolerations[0].effect=NoSchedule",
        "--wait", "--timeout", "5m",
        timeout=360,
    )  # fmt: skip
    return OPERATOR_NS


@pytest.fixture
def restricted_namespace(real_cluster) -> Iterator[str]:
    """A fresh namespace enforcing Pod Security `restricted`, deleted afterwards. Not
    pinned: its pods reach the real node only through their own fields."""
    name = f"real-{uuid.uuid4().hex[:8]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    pin_namespace(real_cluster, name, labels, pin=False)
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
