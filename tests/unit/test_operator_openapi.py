"""Every manifest the operator builds, and the CRD itself, validate against the OpenAPI
schema of the pinned Kubernetes release (tests/cluster/versions.env).

The schema is the release's own `api/openapi-spec/swagger.json`, read from the Go module
cache (downloaded with `go mod download` when the cluster harness has not fetched it
yet). It is made strict here: unknown fields are errors (the API server would drop them
silently, which hides typos such as `readinessprobe`), and int-or-string fields accept
both forms. The other operator tests import `SAMPLES`, `zoo_body` and `k8s_validator`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelzoo_operator import builders
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import Catalog, parse_zoo

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "tests" / "cluster" / "versions.env"
CRD = ROOT / "crds" / "modelzoo.yaml"

SHA = "a" * 64
CATALOG = Catalog(frozenset({"mtcnn", "mobilenet", "centernet", "nsfw"}), "test")
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
        "preprocessing": {"size": [224, 224], "range": [-1, 1]},
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
    return builders.children(zoo, settings or Settings())


# ------------------------------------------------------------------ the schema
def _go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise RuntimeError("the Go toolchain is needed to fetch the Kubernetes OpenAPI schema")
    return found


def k8s_version() -> str:
    for line in VERSIONS.read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError(f"no K8S_VERSION in {VERSIONS}")


def swagger_path() -> Path:
    """swagger.json of the pinned k8s.io/kubernetes module (fetched once if missing)."""
    version = k8s_version()
    go = _go()
    modcache = subprocess.run(
        [go, "env", "GOMODCACHE"], check=True, capture_output=True, text=True
    ).stdout.strip()
    path = Path(modcache) / f"k8s.io/kubernetes@{version}/api/openapi-spec/swagger.json"
    if not path.exists():
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "GOFLAGS": "-mod=mod"}
            subprocess.run([go, "mod", "init", "swaggerfetch"], cwd=tmp, check=True, env=env)
            out = subprocess.run(
                [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
                env=env,
                timeout=1800,
            ).stdout
            path = Path(json.loads(out)["Dir"]) / "api" / "openapi-spec" / "swagger.json"
    return path


def _strict(schema: Any) -> None:
    """Forbid unknown properties in every object schema (in place)."""
    if not isinstance(schema, dict):
        return
    if "properties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for sub in (schema.get("properties") or {}).values():
        _strict(sub)
    for key in ("items", "additionalProperties"):
        _strict(schema.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or ():
            _strict(sub)


@functools.cache
def _definitions() -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    definitions = json.loads(swagger_path().read_text())["definitions"]
    for schema in definitions.values():
        _strict(schema)
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }
    by_kind = {}
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            by_kind.setdefault((api_version, gvk["kind"]), name)
    return definitions, by_kind


def k8s_validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    definitions, by_kind = _definitions()
    name = by_kind[(api_version, kind)]
    return jsonschema.Draft4Validator({"$ref": f"#/definitions/{name}", "definitions": definitions})


def k8s_errors(manifest: dict[str, Any]) -> list[str]:
    validator = k8s_validator(manifest["apiVersion"], manifest["kind"])
    return [
        f"{manifest['kind']} {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(manifest)
    ]


# ------------------------------------------------------------------ the tests
@pytest.mark.unit
def test_the_strict_schema_catches_typos_and_wrong_types():
    deployment = built(SAMPLES["zoo-cpu"])[0]
    assert k8s_errors(deployment) == []
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    assert any("readinessprobe" in e for e in k8s_errors(typo))
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "two"
    assert k8s_errors(wrong)


@pytest.mark.unit
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_built_manifests_validate_against_the_pinned_openapi_schema(sample):
    manifests = built(SAMPLES[sample])
    assert manifests
    for manifest in manifests:
        assert k8s_errors(manifest) == [], manifest["kind"]


@pytest.mark.unit
def test_every_kind_the_operator_may_own_is_in_the_schema():
    _, by_kind = _definitions()
    for api_version, kind in builders.CHILD_KINDS:
        assert (api_version, kind) in by_kind


@pytest.mark.unit
def test_the_crd_validates_as_a_customresourcedefinition():
    crd = yaml.safe_load(CRD.read_text())
    assert k8s_errors(crd) == []
