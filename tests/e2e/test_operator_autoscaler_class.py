"""`autoscaling.autoscalerClass: external` on the real control plane: the operator makes no
HPA and leaves the Deployment's replicas to another autoscaler. `kubectl scale` stands in
for KEDA's HPA, which sets them through the same scale subresource.

Waits are `kubectl wait` or bounded polls of the cluster.
"""

from __future__ import annotations

import pytest

from tests.e2e.kube import (
    apply,
    eventually,
    get_json,
    kubectl_wait,
    names,
    wait_for_zoo,
    zoo_manifest,
)

pytestmark = pytest.mark.e2e
EXTERNAL = {"autoscalerClass": "external", "minReplicas": 1, "maxReplicas": 4}


def uid(cluster, namespace: str, kind: str, name: str) -> str:
    return get_json(cluster, kind, name, "-n", namespace)["metadata"]["uid"]


def wanted_replicas(cluster, namespace: str, deployment: str) -> int:
    return get_json(cluster, "deployment", deployment, "-n", namespace)["spec"]["replicas"]


def reported_replicas(cluster, namespace: str, zoo: str) -> int:
    (model,) = get_json(cluster, "modelzoo", zoo, "-n", namespace)["status"]["models"]
    return model["replicas"]


def full_pass(cluster, namespace: str, zoo: str, model: str) -> None:
    """Make the operator run a full pass and wait until it has: only a full pass puts a
    deleted child back, and it applies the Deployment before the Service."""
    service = f"{zoo}-{model}"
    before = uid(cluster, namespace, "service", service)
    cluster.kubectl("delete", "service", service, "-n", namespace)
    eventually(
        lambda: uid(cluster, namespace, "service", service) != before,
        60,
        f"the full pass that puts service {service} back",
    )


def test_an_external_autoscaler_keeps_the_replicas_it_sets(cluster, operator, namespace):
    model = {"name": "m", "zoo": "mobilenet", "autoscaling": EXTERNAL}
    apply(cluster, namespace, zoo_manifest("ext", model))
    wait_for_zoo(cluster, namespace, "ext")
    assert names(cluster, "deployments", namespace, "ext") == {"ext-m"}
    assert names(cluster, "horizontalpodautoscalers", namespace, "ext") == set()

    cluster.kubectl("scale", "deployment/ext-m", "-n", namespace, "--replicas=3")
    full_pass(cluster, namespace, "ext", "m")
    assert wanted_replicas(cluster, namespace, "ext-m") == 3, "the full pass reset replicas"

    kubectl_wait(cluster, namespace, "jsonpath={.status.readyReplicas}=3", "deployment/ext-m")
    eventually(
        lambda: reported_replicas(cluster, namespace, "ext") == 3,
        60,
        "the status to report the autoscaler's 3 replicas",
    )
    assert wanted_replicas(cluster, namespace, "ext-m") == 3


def test_switching_from_hpa_to_external_deletes_the_operators_hpa(cluster, operator, namespace):
    model = {"name": "m", "zoo": "mobilenet", "autoscaling": {"minReplicas": 1, "maxReplicas": 4}}
    apply(cluster, namespace, zoo_manifest("switch", model))
    wait_for_zoo(cluster, namespace, "switch")
    assert names(cluster, "horizontalpodautoscalers", namespace, "switch") == {"switch-m"}
    deployment = uid(cluster, namespace, "deployment", "switch-m")

    cluster.kubectl(
        "patch", "mz", "switch", "-n", namespace, "--type=json", "-p",
        '[{"op": "add", "path": "/spec/models/0/autoscaling/autoscalerClass", '
        '"value": "external"}]',
    )  # fmt: skip
    kubectl_wait(cluster, namespace, "delete", "hpa/switch-m", timeout=60)
    assert uid(cluster, namespace, "deployment", "switch-m") == deployment, "kept, not replaced"
    wait_for_zoo(cluster, namespace, "switch")


@pytest.mark.parametrize(
    ("scaling", "words"),
    [
        ({**EXTERNAL, "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}}},
         "autoscaling.behavior only applies to autoscalerClass hpa"),
        ({**EXTERNAL, "autoscalerClass": "keda"}, 'Unsupported value: "keda"'),
    ],
)  # fmt: skip
def test_external_autoscaling_the_schema_refuses(cluster, chart, namespace, scaling, words):
    model = {"name": "m", "zoo": "mobilenet", "autoscaling": scaling}
    result = apply(cluster, namespace, zoo_manifest("bad", model), check=False)
    assert result.returncode != 0
    assert words in result.stderr, result.stderr
