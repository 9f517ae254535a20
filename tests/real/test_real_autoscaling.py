"""Autoscaling on the real node, end to end: Prometheus finds the model pods through the
API server and scrapes them, prometheus-adapter serves their in-flight requests through
the custom metrics API, and the cluster's own HPA controller scales the model's
Deployment up under load and down after it, while no request fails.

What these show is real: pods running the project's image on the real node, a real
Prometheus, the real adapter behind the API server's aggregation layer and the real
kube-controller-manager (its HPA re-reads metrics every 5 s here, every 15 s by default).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from tests.cluster import harness
from tests.e2e.kube import eventually, get_json, wait_for_zoo
from tests.real.calls import KeepAliveLoad, service_address, v2_body, wait_routed, zoo_doc
from tests.real.metrics_pipeline import SCRAPE_JOB, MetricsPipeline, metrics_pipeline

pytestmark = pytest.mark.real
INFLIGHT = "modelzoo_inflight_requests"
FACE = np.random.default_rng(11).random((1, 64, 64, 1), dtype=np.float32) * 2 - 1
MAX_REPLICAS = 3
# What the test needs to say how fast: scale up at once, scale down 10 s after the load
# drops (the HPA's default waits 5 minutes), two pods per 5 s either way.
BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 5}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 10,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 5}],
    },
}


@pytest.fixture(scope="module")
def pipeline(real_cluster, tmp_path_factory) -> Iterator[MetricsPipeline]:
    with metrics_pipeline(
        real_cluster, harness.bin_dir(), tmp_path_factory.mktemp("metrics")
    ) as running:
        yield running


class Replicas:
    """The Deployment's replica counts as the test sees them, every time it looks."""

    def __init__(self, cluster, namespace: str, name: str):
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.seen: list[int] = []

    def now(self) -> tuple[int, int]:
        """(wanted, ready) replicas."""
        deployment = get_json(self.cluster, "deployment", self.name, "-n", self.namespace)
        wanted = deployment["spec"]["replicas"]
        self.seen.append(wanted)
        return wanted, deployment["status"].get("readyReplicas", 0)

    def settled_at(self, count: int) -> bool:
        return self.now() == (count, count)


def pods_serving(prometheus, namespace: str, zoo: str) -> set[str]:
    """The zoo's pods whose served-request counter grew in the last 10 s (Prometheus)."""
    expr = (
        f'sum by (pod) (increase(modelzoo_requests_total{{job="{SCRAPE_JOB}",'
        f'namespace="{namespace}",pod=~"{zoo}-.*",code="200"}}[10s]))'
    )
    return {s["metric"]["pod"] for s in prometheus.query(expr) if float(s["value"][1]) > 0}


def test_the_hpa_scales_a_model_up_under_load_and_down_after_it(
    real_cluster, chart, restricted_namespace, pipeline
):
    ns = restricted_namespace
    zoo = f"scaling-{uuid.uuid4().hex[:6]}"
    model = {
        "name": "feelings",
        "zoo": "emotion",
        "autoscaling": {
            "minReplicas": 1,
            "maxReplicas": MAX_REPLICAS,
            "targetInflight": 1,
            "behavior": BEHAVIOR,
        },
    }
    real_cluster.kubectl("apply", "-f", "-", input=json.dumps(zoo_doc(zoo, ns, model)))
    wait_for_zoo(real_cluster, ns, zoo, timeout=300)
    name = f"{zoo}-feelings"
    hpa = get_json(real_cluster, "hpa", name, "-n", ns)
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 10
    address = wait_routed(service_address(real_cluster, ns, zoo, "feelings", "http"))

    # Prometheus found the pod through the API server, and the adapter serves its gauge.
    up = f'up{{job="{SCRAPE_JOB}",namespace="{ns}"}}'
    eventually(lambda: pipeline.prometheus.query(up), 60, "Prometheus to scrape the pod")
    at_rest = eventually(
        lambda: pipeline.custom_metric(real_cluster, ns, INFLIGHT), 60, "the custom metric"
    )
    assert set(at_rest.values()) == {0.0}, at_rest

    replicas = Replicas(real_cluster, ns, name)
    body = v2_body("input", FACE)
    # Closed-loop clients (no pause) keep several requests in flight at the pod; each
    # reconnects every 10 requests so that kube-proxy sends some to the pods that join.
    t0 = time.monotonic()
    with KeepAliveLoad(address, "feelings", body, clients=8, pause=0, reconnect_every=10) as load:
        eventually(lambda: replicas.settled_at(MAX_REPLICAS), 240, "the HPA to scale up")
        scaled_up = time.monotonic() - t0
        serving = eventually(
            lambda: len(pods_serving(pipeline.prometheus, ns, zoo)) == MAX_REPLICAS,
            60,
            "every pod to take traffic",
        )
        busy = pipeline.custom_metric(real_cluster, ns, INFLIGHT)
    # A trickle keeps going while the HPA scales down: the pods it removes drain.
    t1 = time.monotonic()
    with KeepAliveLoad(address, "feelings", body, clients=1, pause=0.1) as trickle:
        eventually(lambda: replicas.settled_at(1), 240, "the HPA to scale down")
        scaled_down = time.monotonic() - t1
        served_before_settling = trickle.ok
        time.sleep(3)  # the remaining pod serves on
    assert load.failures == [], load.failures[:10]
    assert trickle.failures == [], trickle.failures[:10]
    assert serving and len(busy) == MAX_REPLICAS, busy
    assert max(replicas.seen) == MAX_REPLICAS and replicas.seen[0] == 1, replicas.seen
    assert trickle.ok > served_before_settling > 0

    def hpa_settled() -> bool:  # its status catches up at its next sync
        status = get_json(real_cluster, "hpa", name, "-n", ns)["status"]
        return status["currentReplicas"] == status["desiredReplicas"] == 1

    eventually(hpa_settled, 60, "the HPA's status to say 1 replica")
    print(
        f"autoscaling: 1 -> {MAX_REPLICAS} pods in {scaled_up:.0f}s under load "
        f"({load.ok} requests), back to 1 in {scaled_down:.0f}s ({trickle.ok} requests); "
        f"in flight per pod at the top: {busy}; none failed"
    )
