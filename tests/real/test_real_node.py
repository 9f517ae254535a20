"""The real tier: the chart, the operator and a model pod run for real on the real node
(containerd + runc, kubelet, kube-proxy; tests/cluster/realnode.py) from the image
`make image` built from the Dockerfile."""

from __future__ import annotations

import io
import json
import time
import urllib.request
import uuid

import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from modelzoo_operator.builders import LABEL_ZOO
from tests import photos
from tests.cluster import realnode
from tests.real.calls import DIRECT, service_address, wait_routed
from tests.real.conftest import NODE_SELECTOR, RELEASE, TOLERATION
from tests.reference import iou, reference_faces

pytestmark = pytest.mark.real


def pods_of(cluster, namespace: str, selector: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    return json.loads(out.stdout)["items"]


def wait_for(what: str, ok, timeout: float, every: float = 2.0):
    end = time.monotonic() + timeout
    while True:
        value = ok()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def test_chart_runs_the_operator_on_the_real_node_and_helm_test_runs_for_real(real_cluster, chart):
    (pod,) = pods_of(real_cluster, chart, "app.kubernetes.io/component=operator")
    assert pod["spec"]["nodeName"] == realnode.NODE_NAME
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True"
    (status,) = pod["status"]["containerStatuses"]
    assert status["imageID"] and status["state"].get("running"), status

    # helm test: the chart's healthcheck pod runs on the real node and succeeds.
    real_cluster.helm("test", RELEASE, "-n", chart, timeout=240)
    # Turned off: the healthcheck really asks the operator, so it fails.
    deploy = f"deployment/{RELEASE}"
    real_cluster.kubectl("scale", deploy, "-n", chart, "--replicas=0")
    try:
        real_cluster.kubectl(
            "wait", "--for=delete", "pod", "-n", chart,
            "-l", "app.kubernetes.io/component=operator",
            "--timeout=90s", timeout=120,
        )  # fmt: skip
        failed = real_cluster.helm("test", RELEASE, "-n", chart, check=False, timeout=240)
        assert failed.returncode != 0, failed.stdout
    finally:
        real_cluster.kubectl("scale", deploy, "-n", chart, "--replicas=1")
        real_cluster.kubectl(
            "rollout", "status", deploy, "-n", chart, "--timeout=180s", timeout=200
        )


def test_mtcnn_zoo_serves_faces_from_the_real_node(real_cluster, chart, restricted_namespace):
    ns = restricted_namespace
    zoo = f"faces-{uuid.uuid4().hex[:6]}"
    doc = {
        "apiVersion": "modelzoo.dev/v1alpha1",
        "kind": "ModelZoo",
        "metadata": {"name": zoo, "namespace": ns},
        "spec": {
            "models": [
                {
                    "name": "faces",
                    "zoo": "mtcnn",
                    "gpu": 0,
                    "nodeSelector": NODE_SELECTOR,
                    "tolerations": [TOLERATION],
                }
            ]
        },
    }
    t0 = time.monotonic()
    real_cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
    real_cluster.kubectl(
        "wait", "--for=condition=Ready", f"modelzoo/{zoo}", "-n", ns, "--timeout=300s",
        timeout=320,
    )  # fmt: skip
    ready_s = time.monotonic() - t0
    pods = pods_of(real_cluster, ns, f"{LABEL_ZOO}={zoo}")
    assert pods and all(p["spec"]["nodeName"] == realnode.NODE_NAME for p in pods)
    spec = pods[0]["spec"]
    server = next(c for c in spec["containers"] if c["name"] == "server")
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True

    address = wait_routed(service_address(real_cluster, ns, zoo, "faces", "http"))

    rgb = photos.astronaut()
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    # The ClusterIP through kube-proxy in the node's netns (the host routes the Service
    # CIDR there); no proxy may intercept it.
    req = urllib.request.Request(
        f"http://{address}/infer",
        data=png.getvalue(),
        headers={"Content-Type": "image/png"},
        method="POST",
    )
    with DIRECT.open(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    expected = reference_faces(rgb)
    got = answer["detections"]
    assert len(got) == len(expected) >= 1, (got, expected)
    for face in expected:
        assert max(iou(face["box"], g["box"]) for g in got) > 0.8, (got, expected)
    print(f"ModelZoo {zoo}: apply -> Ready in {ready_s:.1f}s on {realnode.NODE_NAME}")

    # The operator's own metrics, from its pod (the chart's metricsPort), say the same.
    (operator,) = pods_of(real_cluster, chart, "app.kubernetes.io/component=operator")
    metrics_url = f"http://{operator['status']['podIP']}:8081/metrics"
    with DIRECT.open(metrics_url, timeout=10) as resp:
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.read().decode())
            for s in family.samples
        }
    model = (("model", "faces"), ("namespace", ns), ("zoo", zoo))
    assert samples[("modelzoo_operator_model_ready_replicas", model)] == 1
    full_ok = (("kind", "full"), ("result", "ok"))
    assert samples[("modelzoo_operator_reconciles_total", full_ok)] >= 1
