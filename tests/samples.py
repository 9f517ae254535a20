"""Zoo specs shared by the operator's tests (unit, cluster tools, e2e): model specs that
cover every branch of the builders, a ModelZoo body around them, and what the builders
make of them."""

from __future__ import annotations

import copy
from typing import Any

from modelzoo_operator import builders
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import ZooEntryNames, parse_zoo

SHA = "a" * 64
# A caBundle's shape (the operator passes it on; only the fetch's TLS reads it).
PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZm9v\n-----END CERTIFICATE-----\n"
CATALOG = ZooEntryNames(frozenset({"mtcnn", "mobilenet", "centernet", "nsfw"}), "test")
SIGNATURE = {
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 224, 224, 3]}],
    "outputs": [{"name": "scores", "dtype": "float32", "shape": [-1, 1001], "tensor": "out:0"}],
}

# Model specs covering every branch of the builders (as the API server hands them over,
# i.e. with the CRD's defaults applied).
SAMPLES: dict[str, dict[str, Any]] = {
    "zoo-gpu": {"name": "faces", "zoo": "mtcnn", "gpu": 1, "replicas": 1},
    "zoo-cpu": {"name": "classify", "zoo": "mobilenet", "gpu": 0, "replicas": 2},
    "url-batching-autoscaling": {
        "name": "custom",
        "source": {"url": "https://models.example/m.pb", "sha256": SHA},
        "task": "image-classification",
        "signature": SIGNATURE,
        "preprocessing": {"size": [224, 224], "scale": 1 / 127.5, "offset": -1.0},
        "labels": ["background", "cat", "dog"],
        "replicas": 1,
        "gpu": 0,
        "batching": {"maxBatchSize": 16, "maxDelayMs": 2.5},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 6, "targetInflight": 8},
        "maxInflight": 32,
    },
    "pvc-placement": {
        "name": "tensors",
        "source": {"pvc": {"claimName": "graphs", "path": "v3/model.pb"}, "sha256": SHA},
        "task": "tensor",
        "signature": SIGNATURE,
        "replicas": 3,
        "gpu": 2,
        "resources": {"requests": {"cpu": 2, "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "nodeSelector": {"topology.kubernetes.io/zone": "eu-1a"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"modelzoo.dev/model": "tensors"}},
                        },
                    }
                ]
            }
        },
    },
    "scaled-to-zero": {"name": "idle", "zoo": "centernet", "gpu": 0, "replicas": 0},
    "s3-private-store": {
        "name": "stored",
        "source": {
            "s3": {
                "endpoint": "https://store.storage.svc:9000",
                "bucket": "models",
                "key": "resnet/v2/model.pb",
                "region": "us-east-1",
                "secretName": "model-store",
                "pathStyle": True,
                "caBundle": PEM,
            },
            "sha256": SHA,
        },
        "task": "tensor",
        "signature": SIGNATURE,
        "replicas": 1,
        "gpu": 0,
    },
}


def zoo_body(*models: dict[str, Any], name: str = "demo", namespace: str = "ml") -> dict:
    return {
        "apiVersion": "modelzoo.dev/v1alpha1",
        "kind": "ModelZoo",
        "metadata": {"name": name, "namespace": namespace, "uid": "uid-1234", "generation": 3},
        "spec": {"models": [copy.deepcopy(m) for m in models]},
    }


def built(*models: dict[str, Any], settings: Settings | None = None) -> list[dict]:
    zoo = parse_zoo(zoo_body(*models), CATALOG)
    assert not zoo.problems, zoo.problems
    settings = settings or Settings()
    return [m for model in zoo.models for m in builders.model_children(zoo, model, settings)]


# NetworkPolicy peers: the Prometheus namespace, a gateway, and DNS for egress.
MONITORING = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
GATEWAY = {
    "namespaceSelector": {"matchLabels": {"team": "web"}},
    "podSelector": {"matchLabels": {"app": "gateway"}},
}
DNS = {
    "to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}
