"""Talking to model pods on the real node from the host: ModelZoo documents aimed at the
node, Service addresses (ClusterIPs route into the node's netns) and V2 calls."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from tests.e2e.kube import eventually, get_json
from tests.real.conftest import NODE_SELECTOR, TOLERATION

# ClusterIPs are reached through kube-proxy in the node's netns: no HTTP proxy of the
# host's environment may intercept them.
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Small requests, so that a rolling update's surge pod fits next to the others on a
# 2-core node; no limit, so TensorFlow's import is never OOM-killed on a busy machine.
SMALL = {"requests": {"cpu": "100m", "memory": "256Mi"}}


def on_real_node(model: dict[str, Any]) -> dict[str, Any]:
    """A model spec that lands on the real node, with its own fields (not namespace
    annotations) as a user would write them."""
    return {
        "gpu": 0,
        "nodeSelector": NODE_SELECTOR,
        "tolerations": [TOLERATION],
        "resources": SMALL,
        **model,
    }


def zoo_doc(name: str, namespace: str, *models: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelzoo.dev/v1alpha1",
        "kind": "ModelZoo",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"models": [on_real_node(m) for m in models]},
    }


def service_address(cluster, namespace: str, zoo: str, model: str, port: str) -> str:
    """host:port of a model's Service port (`http` or `grpc`) on its ClusterIP."""
    service = get_json(cluster, "service", f"{zoo}-{model}", "-n", namespace)
    number = next(p["port"] for p in service["spec"]["ports"] if p["name"] == port)
    return f"{service['spec']['clusterIP']}:{number}"


def _answers(address: str) -> bool:
    try:
        with DIRECT.open(f"http://{address}/v2/health/ready", timeout=5) as response:
            return response.status == 200
    except OSError:  # URLError too
        return False


def wait_routed(address: str, timeout: float = 60) -> str:
    """Wait until a Service's ClusterIP answers, and return it. A zoo is Ready when its
    pods are; kube-proxy programs the Service's rules a moment after the endpoints change
    (a connection before that finds no route)."""
    eventually(lambda: _answers(address), timeout, f"{address} to answer")
    return address


def v2_body(name: str, array: np.ndarray) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": "FP32",
                    "shape": list(array.shape),
                    "data": array.reshape(-1).tolist(),
                }
            ]
        }
    ).encode()


def v2_infer(
    address: str, model: str, body: bytes, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    """(status, JSON answer) of one REST V2 inference; 4xx answers are returned, not raised."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://{address}/v2/models/{model}/infer", data=body, headers=headers, method="POST"
    )
    try:
        with DIRECT.open(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def output(answer: dict[str, Any], name: str) -> np.ndarray:
    (tensor,) = [o for o in answer["outputs"] if o["name"] == name]
    return np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
