"""The ModelZoo CRD: one source of truth, documented, strict, with the columns we print.

The OpenAPI part of the schema is checked here with jsonschema (the CEL rules and the
structural-schema rules of the API server are exercised by tests/e2e, which applies the
CRD to a real kube-apiserver and applies invalid zoos to it).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from modelzoo_operator.spec import parse_zoo
from tests.samples import CATALOG, SAMPLES, SHA

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "modelzoo.yaml"
CHART_CRD_FILE = ROOT / "charts" / "modelzoo" / "crds" / "modelzoo.yaml"
EXAMPLE = ROOT / "docs" / "examples" / "modelzoo.yaml"
S3_EXAMPLE = ROOT / "docs" / "examples" / "modelzoo-s3.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_FILE.read_text())


@pytest.fixture(scope="module")
def version(crd) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    return only


def openapi_to_jsonschema(schema: Any) -> Any:
    """The OpenAPI v3 subset as JSON Schema draft 4, strict like `kubectl apply`'s
    field validation (unknown fields are errors except where unknown fields are kept)."""
    if isinstance(schema, list):
        return [openapi_to_jsonschema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        k: openapi_to_jsonschema(v)
        for k, v in schema.items()
        if not k.startswith("x-kubernetes-") and k not in ("description", "default")
    }
    if "properties" in schema:
        out["properties"] = {k: openapi_to_jsonschema(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    return out


@pytest.fixture(scope="module")
def validator(version) -> jsonschema.Draft4Validator:
    schema = openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft4Validator(schema)


def zoo(*models: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "modelzoo.dev/v1alpha1",
        "kind": "ModelZoo",
        "metadata": {"name": "demo"},
        "spec": {"models": [copy.deepcopy(m) for m in models]},
    }


def errors(validator, body) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)
    ]


def test_the_chart_ships_the_same_file():
    assert CHART_CRD_FILE.read_bytes() == CRD_FILE.read_bytes(), (
        "charts/modelzoo/crds/modelzoo.yaml drifted from crds/modelzoo.yaml: copy it over"
    )


def test_names_scope_and_status_subresource(crd, version):
    assert crd["metadata"]["name"] == "modelzoos.modelzoo.dev"
    assert crd["spec"]["group"] == "modelzoo.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "ModelZoo",
        "modelzoos",
        ["mz"],
    )
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_printer_columns(version):
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Models", "Ready", "GPU", "Age", "URL"]
    assert columns["Ready"]["jsonPath"] == ".status.ready"
    assert columns["Age"]["jsonPath"] == ".metadata.creationTimestamp"
    assert columns["URL"].get("priority") == 1, "-o wide only"
    assert all(c.get("priority", 0) == 0 for n, c in columns.items() if n != "URL")
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for column in columns.values():
        path = column["jsonPath"].split(".")[1:]
        if path[0] == "status":
            assert path[1] in status, column


def walk(schema: dict[str, Any], path: str = ""):
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")


def test_every_field_is_described_for_kubectl_explain(version):
    root = version["schema"]["openAPIV3Schema"]
    missing = [
        path or "<root>"
        for path, s in walk(root)
        # Scalars inside a list (shape[], labels[]) are documented by their list, and
        # the API server documents (and forbids describing) metadata.
        if not s.get("description")
        and not (path.endswith("[]") and s.get("type") != "object")
        and path != ".metadata"
    ]
    assert missing == []


def test_lists_are_maps_keyed_by_name_and_type(version):
    props = version["schema"]["openAPIV3Schema"]["properties"]
    models = props["spec"]["properties"]["models"]
    assert models["x-kubernetes-list-type"] == "map"
    assert models["x-kubernetes-list-map-keys"] == ["name"]
    assert models["items"]["required"] == ["name"]
    status = props["status"]["properties"]
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    assert status["models"]["x-kubernetes-list-map-keys"] == ["name"]
    assert status["kopf"]["x-kubernetes-preserve-unknown-fields"] is True


def test_defaults(version):
    model = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["models"]
    props = model["items"]["properties"]
    assert props["replicas"]["default"] == 1
    assert props["gpu"]["default"] == 0
    assert props["batching"]["properties"]["maxBatchSize"]["default"] >= 1
    assert props["autoscaling"]["properties"]["minReplicas"]["default"] == 1
    assert props["autoscaling"]["properties"]["targetInflight"]["default"] >= 1
    assert props["autoscaling"]["properties"]["autoscalerClass"]["default"] == "hpa"


def test_cel_rules_cover_what_openapi_cannot(version):
    root = version["schema"]["openAPIV3Schema"]
    item = root["properties"]["spec"]["properties"]["models"]["items"]
    rules = [r["rule"] for r in item["x-kubernetes-validations"]]
    assert "has(self.zoo) != has(self.source)" in rules
    source_rules = [r["rule"] for r in item["properties"]["source"]["x-kubernetes-validations"]]
    one = "(has(self.url) ? 1 : 0) + (has(self.pvc) ? 1 : 0) + (has(self.s3) ? 1 : 0) == 1"
    assert one in source_rules
    assert "!(has(self.url) || has(self.s3)) || has(self.sha256)" in source_rules
    scaling = item["properties"]["autoscaling"]["x-kubernetes-validations"]
    assert scaling[0]["rule"] == "self.minReplicas <= self.maxReplicas"
    # An external autoscaler has its own behavior; ours would silently do nothing.
    assert scaling[1]["rule"] == "self.autoscalerClass != 'external' || !has(self.behavior)"
    for rule in root["x-kubernetes-validations"] + item["x-kubernetes-validations"] + scaling:
        assert rule["message"], "every rule says what is wrong in words"


def test_the_samples_and_the_example_are_valid(validator):
    assert errors(validator, zoo(*SAMPLES.values())) == []
    assert errors(validator, yaml.safe_load(EXAMPLE.read_text())) == []
    secret, s3_zoo = yaml.safe_load_all(S3_EXAMPLE.read_text())
    assert errors(validator, s3_zoo) == []
    assert parse_zoo(s3_zoo, CATALOG).problems == {}
    s3 = s3_zoo["spec"]["models"][0]["source"]["s3"]
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == s3["secretName"]
    assert set(secret["stringData"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max"},
    "scaleDown": {
        "stabilizationWindowSeconds": 30,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}],
    },
}


def scaled(behavior: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "x",
        "zoo": "mtcnn",
        "autoscaling": {"maxReplicas": 3, "targetInflight": 2, "behavior": behavior},
    }


def test_autoscaling_behavior_is_accepted_by_the_schema_and_the_parser(validator):
    assert errors(validator, zoo(scaled(BEHAVIOR))) == []
    assert parse_zoo(zoo(scaled(BEHAVIOR)), CATALOG).problems == {}


def autoscaled(**scaling: Any) -> dict[str, Any]:
    return {"name": "x", "zoo": "mtcnn", "autoscaling": {"maxReplicas": 3, **scaling}}


def test_an_external_autoscaler_class_is_accepted_by_the_schema_and_the_parser(validator):
    body = zoo(autoscaled(autoscalerClass="external", minReplicas=1))
    assert errors(validator, body) == []
    assert parse_zoo(body, CATALOG).problems == {}


def test_an_unknown_autoscaler_class_is_refused_by_the_schema_and_the_parser(validator):
    body = zoo(autoscaled(autoscalerClass="keda"))
    found = errors(validator, body)
    assert any("autoscalerClass" in e for e in found), found
    (problem,) = parse_zoo(body, CATALOG).problems.values()
    assert "autoscaling.autoscalerClass" in problem, problem


@pytest.mark.parametrize(
    ("rules", "where"),
    [
        ({"selectPolicy": "Fastest"}, "selectPolicy"),
        ({"stabilizationWindowSeconds": 3601}, "stabilizationWindowSeconds"),
        ({"stabilizationWindowSeconds": -1}, "stabilizationWindowSeconds"),
        ({"policies": []}, "policies"),
        ({"policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}] * 11}, "policies"),
        ({"policies": [{"type": "Nodes", "value": 1, "periodSeconds": 15}]}, "type"),
        ({"policies": [{"type": "Pods", "value": 0, "periodSeconds": 15}]}, "value"),
        ({"policies": [{"type": "Pods", "value": 1, "periodSeconds": 1801}]}, "periodSeconds"),
        ({"policies": [{"type": "Pods", "value": 1}]}, "periodSeconds"),
        ({"tolerance": 0.1}, "tolerance"),
    ],
)
def test_bad_autoscaling_behavior_is_refused_by_the_schema_and_the_parser(validator, rules, where):
    """The parser checks what the schema checks: a zoo that never met the API server's
    validation gets the same answer."""
    body = zoo(scaled({"scaleDown": rules}))
    found = errors(validator, body)
    assert any(where in e for e in found), found
    (problem,) = parse_zoo(body, CATALOG).problems.values()
    assert "autoscaling.behavior.scaleDown" in problem and where in problem, problem


@pytest.mark.parametrize(
    ("model", "where"),
    [
        ({"name": "Faces", "zoo": "mtcnn"}, "name"),
        ({"name": "faces", "zoo": "mtcnn", "replicas": -1}, "replicas"),
        ({"name": "faces", "zoo": "mtcnn", "gpu": -1}, "gpu"),
        ({"name": "faces", "zoo": "mtcnn", "gpu": 1.5}, "gpu"),
        ({"name": "faces", "zoo": "mtcnn", "replica": 2}, "replica"),
        ({"name": "x", "source": {"url": "ftp://h/m.pb", "sha256": SHA}}, "url"),
        ({"name": "x", "source": {"url": "https://h/m.pb", "sha256": "nothex"}}, "sha256"),
        ({"name": "x", "source": {"pvc": {"claimName": "c"}}}, "pvc"),
        (
            {"name": "x", "source": {"s3": {"endpoint": "s3.example", "bucket": "b", "key": "k"}}},
            "endpoint",
        ),
        ({"name": "x", "source": {"s3": {"endpoint": "https://s3.example", "key": "k"}}}, "bucket"),
        ({"name": "x", "zoo": "mtcnn", "batching": {"maxBatchSize": 0}}, "maxBatchSize"),
        ({"name": "x", "zoo": "mtcnn", "batching": {"maxDelayMs": 5000}}, "maxDelayMs"),
        ({"name": "x", "zoo": "mtcnn", "autoscaling": {"minReplicas": 1}}, "maxReplicas"),
        ({"name": "x", "zoo": "mtcnn", "autoscaling": {"maxReplicas": 0}}, "maxReplicas"),
        ({"name": "x", "zoo": "mtcnn", "task": "poetry"}, "task"),
        ({"name": "x", "zoo": "mtcnn", "resources": {"limits": {"cpu": "lots"}}}, "cpu"),
        (
            {
                "name": "x",
                "source": {"url": "https://h/m.pb", "sha256": SHA},
                "task": "tensor",
                "signature": {
                    "inputs": [{"name": "a", "dtype": "complex", "shape": []}],
                    "outputs": [{"name": "b", "dtype": "float32", "shape": []}],
                },
            },
            "dtype",
        ),
    ],
)
def test_bad_specs_are_refused_with_the_field_named(validator, model, where):
    found = errors(validator, zoo(model))
    assert found, model
    assert any(where in e for e in found), found
