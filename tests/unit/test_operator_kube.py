"""REST paths of the small client (its requests are exercised against the real API
server by tests/e2e)."""

from __future__ import annotations

import pytest

from modelzoo_operator import builders
from modelzoo_operator.kube import PLURALS, path

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("apps/v1", "Deployment", "ml", "demo-faces"),
         "/apis/apps/v1/namespaces/ml/deployments/demo-faces"),
        (("v1", "Service", "ml", ""), "/api/v1/namespaces/ml/services"),
        (("v1", "PersistentVolumeClaim", "ml", "graphs"),
         "/api/v1/namespaces/ml/persistentvolumeclaims/graphs"),
        (("modelzoo.dev/v1alpha1", "ModelZoo", "", ""), "/apis/modelzoo.dev/v1alpha1/modelzoos"),
        (("kopf.dev/v1", "ClusterKopfPeering", "ignored", "mz"),
         "/apis/kopf.dev/v1/clusterkopfpeerings/mz"),
        (("autoscaling/v2", "HorizontalPodAutoscaler", "ml", "x"),
         "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/x"),
    ],
)  # fmt: skip
def test_paths(args, expected):
    assert path(*args) == expected


def test_every_child_kind_has_a_path():
    for _, kind in builders.CHILD_KINDS:
        assert PLURALS[kind][1], f"{kind} is namespaced"
