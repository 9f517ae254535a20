"""Talking to model pods on the real node from the host: ModelZoo documents aimed at the
node, Service addresses (ClusterIPs route into the node's netns) and V2 calls."""

from __future__ import annotations

import http.client
import json
import threading
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


class KeepAliveLoad:
    """A bounded client: `clients` threads, each on a keep-alive connection, sending V2
    requests until stopped (or `limit` requests in all), `pause` seconds apart; every
    failure is kept. With `reconnect_every`, a client opens a new connection after that
    many requests, so kube-proxy spreads the load over pods that started after it."""

    def __init__(
        self,
        address: str,
        model: str,
        body: bytes,
        clients: int = 4,
        limit: int = 20000,
        pause: float = 0.02,  # ~50 requests/s per client: load, not a flood
        reconnect_every: int = 0,
    ):
        host, port = address.rsplit(":", 1)
        self.target = (host, int(port))
        self.path = f"/v2/models/{model}/infer"
        self.body = body
        self.limit = limit
        self.pause = pause
        self.reconnect_every = reconnect_every
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        connection = http.client.HTTPConnection(*self.target, timeout=30)
        headers = {"Content-Type": "application/json"}
        sent = 0
        while not self._stop.is_set() and self.ok + len(self.failures) < self.limit:
            sent += 1
            if self.reconnect_every and sent % self.reconnect_every == 0:
                connection.close()  # the next request connects again
            try:
                connection.request("POST", self.path, body=self.body, headers=headers)
                response = connection.getresponse()
                response.read()  # a `Connection: close` answer closes; the next reconnects
                failure = None if response.status == 200 else f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                failure = f"{type(exc).__name__}: {exc}"
                connection.close()
            with self._lock:
                if failure:
                    self.failures.append(failure)
                else:
                    self.ok += 1
            self._stop.wait(self.pause)
        connection.close()

    def __enter__(self) -> KeepAliveLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
