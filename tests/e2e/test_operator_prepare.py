"""The prepare step against the real control plane: which Deployments get the
`prepare-model` init container, and the runtime its termination message names reaching
the zoo's status.

kwok's pods run nothing, so no init container writes a termination message here; the
test writes one into a pod's status (the status subresource, as a kubelet would) and
waits for the operator to read it."""

from __future__ import annotations

import json

import pytest

from tests.e2e.kube import apply, eventually, get_json, wait_for_zoo, zoo_manifest
from tests.samples import SHA, SIGNATURE

pytestmark = pytest.mark.e2e
LITERT_LINE = "litert: verified, max abs diff 3e-05 (tolerance 0.001)"


def _models(cluster, namespace: str, zoo: str) -> dict[str, dict]:
    status = get_json(cluster, "modelzoo", zoo, "-n", namespace).get("status") or {}
    return {m["name"]: m for m in status.get("models") or ()}


def _init_containers(cluster, namespace: str, name: str) -> list[str]:
    deployment = get_json(cluster, "deployment", name, "-n", namespace)
    spec = deployment["spec"]["template"]["spec"]
    return [c["name"] for c in spec.get("initContainers") or ()]


def test_a_prepared_graph_reports_the_runtime_its_pod_chose(cluster, operator, namespace):
    source = {"url": "https://models.example/m.pb", "sha256": SHA}
    zoo = zoo_manifest(
        "prep",
        {"name": "mine", "source": source, "task": "image-classification",
         "signature": SIGNATURE},
        {"name": "raw", "source": source, "task": "tensor", "signature": SIGNATURE},
        {"name": "pinned", "source": source, "task": "image-classification",
         "signature": SIGNATURE, "runtime": "tensorflow"},
    )  # fmt: skip
    apply(cluster, namespace, zoo)
    wait_for_zoo(cluster, namespace, "prep")
    assert _init_containers(cluster, namespace, "prep-mine") == ["fetch-model", "prepare-model"]
    assert _init_containers(cluster, namespace, "prep-raw") == ["fetch-model"]
    assert _init_containers(cluster, namespace, "prep-pinned") == ["fetch-model"]

    models = _models(cluster, namespace, "prep")
    assert "runtime" not in models["mine"], "no pod has run the prepare step yet"
    assert models["raw"]["runtime"] == "tensorflow"
    assert "tensor model" in models["raw"]["runtimeReason"]
    assert models["pinned"]["runtime"] == "tensorflow"

    selector = "modelzoo.dev/zoo=prep,modelzoo.dev/model=mine"
    (pod,) = get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]

    def finished(name: str, message: str) -> dict:
        return {
            "name": name, "image": "registry.invalid/modelzoo:e2e", "imageID": "",
            "ready": True, "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": message}},
        }  # fmt: skip

    statuses = [finished("fetch-model", ""), finished("prepare-model", LITERT_LINE + "\n")]
    cluster.kubectl(
        "patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": {"initContainerStatuses": statuses}}),
    )  # fmt: skip

    def reported() -> dict | None:
        mine = _models(cluster, namespace, "prep")["mine"]
        return mine if mine.get("runtime") else None

    # The next pass (the drift sweep at the latest) lists the pods of a prepared model.
    mine = eventually(reported, 60, "the prepare step's runtime in the status")
    assert mine["runtime"] == "litert"
    assert mine["runtimeReason"] == "verified, max abs diff 3e-05 (tolerance 0.001)"
    assert mine["phase"] == "Ready"
