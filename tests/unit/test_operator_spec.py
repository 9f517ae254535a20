"""Parsing a ModelZoo and the checks the schema cannot make."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from modelzoo_operator.spec import ZooEntryNames, load_zoo_entry_names, parse_zoo
from tests.samples import CATALOG, SAMPLES, SHA, SIGNATURE, zoo_body

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "modelzoo.yaml"


def problems(
    *models: dict, name: str = "demo", entry_names: ZooEntryNames = CATALOG
) -> dict[str, str]:
    return dict(parse_zoo(zoo_body(*models, name=name), entry_names).problems)


def test_the_example_has_one_gpu_and_one_cpu_model_and_parses_cleanly():
    body = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"].update(namespace="default", uid="u")
    zoo = parse_zoo(body, CATALOG)
    assert zoo.problems == {}
    gpu = {m.source.zoo: m.gpu for m in zoo.models}
    assert gpu["mtcnn"] > 0 and gpu["mobilenet"] == 0


def test_every_sample_parses():
    zoo = parse_zoo(zoo_body(*SAMPLES.values()), CATALOG)
    assert zoo.problems == {}
    assert zoo.all_names == tuple(m["name"] for m in SAMPLES.values())
    custom = next(m for m in zoo.models if m.name == "custom")
    assert custom.source.kind == "url" and custom.autoscaling.min_replicas == 2
    assert custom.min_replicas == 2
    assert custom.batching.max_batch_size == 16 and custom.batching.max_delay_ms == 2.5


def test_an_unknown_zoo_entry_is_a_problem_of_that_model_only():
    found = problems(SAMPLES["zoo-cpu"], {"name": "x", "zoo": "resnet"})
    assert list(found) == ["x"]
    assert "unknown zoo entry 'resnet'" in found["x"]
    assert "mobilenet" in found["x"], "the message lists what the image has"


def test_zoo_entries_are_not_checked_when_the_catalog_is_unknown():
    assert problems({"name": "x", "zoo": "resnet"}, entry_names=ZooEntryNames(None, "?")) == {}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"source": {"url": "https://x/m.pb"}}, "sha256"),
        ({"source": {"url": "ftp://x/m.pb", "sha256": SHA}}, "http"),
        (
            {"source": {"url": "https://x/m.pb", "pvc": {"claimName": "c", "path": "p"}}},
            "exactly one",
        ),
        ({"source": {"pvc": {"claimName": "c", "path": "../etc/passwd"}}}, "relative"),
        ({"source": {"pvc": {"claimName": "c", "path": "/abs.pb"}}}, "relative"),
        ({"source": {"url": "https://x/m.pb", "sha256": "abc"}}, "64 hex"),
        ({"signature": None}, "signature"),
        ({"task": "poetry"}, "task"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas"),
        ({"replicas": -1}, "negative"),
    ],
)
def test_source_models_that_cannot_work(change, words):
    model = copy.deepcopy(SAMPLES["url-batching-autoscaling"])
    model.update(change)
    model = {k: v for k, v in model.items() if v is not None}
    found = problems(model)
    assert words in found.get("custom", ""), found


# ------------------------------------------------------------------ autoscaling.behavior
BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max"},
    "scaleDown": {
        "stabilizationWindowSeconds": 30,
        "policies": [
            {"type": "Pods", "value": 1, "periodSeconds": 15},
            {"type": "Percent", "value": 50, "periodSeconds": 60},
        ],
    },
}
POLICY = {"type": "Pods", "value": 1, "periodSeconds": 15}
DOWN = "autoscaling.behavior.scaleDown"


def with_behavior(behavior: object) -> dict:
    model = copy.deepcopy(SAMPLES["url-batching-autoscaling"])
    model["autoscaling"]["behavior"] = behavior
    return model


def test_autoscaling_behavior_is_kept_as_given_and_absent_without_it():
    body = zoo_body(with_behavior(BEHAVIOR))
    (model,) = parse_zoo(body, CATALOG).models
    assert model.autoscaling.behavior == BEHAVIOR
    body["spec"]["models"][0]["autoscaling"]["behavior"]["scaleUp"]["selectPolicy"] = "Min"
    assert model.autoscaling.behavior == BEHAVIOR, "a copy, not the caller's body"
    (model,) = parse_zoo(zoo_body(SAMPLES["url-batching-autoscaling"]), CATALOG).models
    assert model.autoscaling.behavior is None


def test_autoscaling_behavior_accepts_the_crds_limits():
    edge = {"stabilizationWindowSeconds": 3600, "policies": [{**POLICY, "periodSeconds": 1800}]}
    limits = {
        "scaleUp": {"selectPolicy": "Disabled"},
        "scaleDown": {**edge, "policies": [POLICY] * 10},
    }
    assert problems(with_behavior(limits)) == {}
    assert problems(with_behavior({"scaleDown": edge})) == {}


@pytest.mark.parametrize(
    ("behavior", "message"),
    [
        (
            {"scaleDown": {"stabilizationWindowSeconds": 3601}},
            f"{DOWN}.stabilizationWindowSeconds must be from 0 to 3600, not 3601",
        ),
        (
            {"scaleUp": {"stabilizationWindowSeconds": -1}},
            "autoscaling.behavior.scaleUp.stabilizationWindowSeconds must be from 0 to 3600, "
            "not -1",
        ),
        (
            {"scaleDown": {"stabilizationWindowSeconds": "30s"}},
            f"{DOWN}.stabilizationWindowSeconds must be an integer, not '30s'",
        ),
        (
            {"scaleUp": {"selectPolicy": "Fastest"}},
            "autoscaling.behavior.scaleUp.selectPolicy must be one of Max, Min, Disabled, "
            "not 'Fastest'",
        ),
        ({"scaleDown": {"policies": []}}, f"{DOWN}.policies must list 1 to 10 policies"),
        ({"scaleDown": {"policies": [POLICY] * 11}}, f"{DOWN}.policies must list 1 to 10 policies"),
        (
            {"scaleDown": {"policies": [{**POLICY, "type": "Nodes"}]}},
            f"{DOWN}.policies[0].type must be one of Pods, Percent, not 'Nodes'",
        ),
        (
            {"scaleDown": {"policies": [POLICY, {**POLICY, "value": 0}]}},
            f"{DOWN}.policies[1].value must be at least 1, not 0",
        ),
        (
            {"scaleDown": {"policies": [{**POLICY, "periodSeconds": 0}]}},
            f"{DOWN}.policies[0].periodSeconds must be from 1 to 1800, not 0",
        ),
        (
            {"scaleDown": {"policies": [{**POLICY, "periodSeconds": 1801}]}},
            f"{DOWN}.policies[0].periodSeconds must be from 1 to 1800, not 1801",
        ),
        (
            {"scaleDown": {"policies": [{"type": "Pods", "value": 1}]}},
            f"{DOWN}.policies[0] needs periodSeconds",
        ),
        (
            {"scaleSideways": {}},
            "autoscaling.behavior has unknown field 'scaleSideways' (known: scaleUp, scaleDown)",
        ),
        (
            {"scaleDown": {"tolerance": 0.1}},
            f"{DOWN} has unknown field 'tolerance' "
            "(known: stabilizationWindowSeconds, selectPolicy, policies)",
        ),
        ({"scaleDown": 30}, f"{DOWN} must be an object, not 30"),
    ],
)
def test_autoscaling_behavior_outside_the_crds_bounds_is_refused(behavior, message):
    assert problems(with_behavior(behavior)) == {"custom": message}


# ------------------------------------------------------------------ autoscaling.autoscalerClass
def with_class(autoscaler_class: object, **scaling: object) -> dict:
    model = copy.deepcopy(SAMPLES["url-batching-autoscaling"])
    model["autoscaling"].update(autoscalerClass=autoscaler_class, **scaling)
    return model


def test_the_autoscaler_class_is_hpa_unless_external_is_asked_for():
    (ours,) = parse_zoo(zoo_body(SAMPLES["url-batching-autoscaling"]), CATALOG).models
    assert ours.autoscaling.autoscaler_class == "hpa" and not ours.autoscaling.external
    (external,) = parse_zoo(zoo_body(with_class("external")), CATALOG).models
    assert external.autoscaling.autoscaler_class == "external" and external.autoscaling.external
    assert external.min_replicas == 2, "minReplicas is still the floor"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            with_class("keda"),
            "autoscaling.autoscalerClass must be one of hpa, external, not 'keda'",
        ),
        (
            with_class("external", behavior=BEHAVIOR),
            "autoscaling.behavior only applies to autoscalerClass hpa: "
            "set it on the external autoscaler instead",
        ),
        (
            with_class("external", behavior={}),
            "autoscaling.behavior only applies to autoscalerClass hpa: "
            "set it on the external autoscaler instead",
        ),
        (
            with_class("external", minReplicas=5, maxReplicas=2),
            "autoscaling.minReplicas is larger than maxReplicas",
        ),
    ],
)
def test_autoscaler_classes_that_cannot_work(model, message):
    assert problems(model) == {"custom": message}


def test_zoo_entries_bring_their_own_signature():
    found = problems({"name": "faces", "zoo": "mtcnn", "signature": SIGNATURE})
    assert "carries its own" in found["faces"]
    found = problems(
        {"name": "faces", "zoo": "mtcnn", "source": {"url": "https://x", "sha256": SHA}}
    )
    assert "exactly one" in found["faces"]


def test_names_must_fit_kubernetes_limits():
    long = "m" * 50
    found = problems({"name": long, "zoo": "mtcnn"}, name="zoo")
    assert "too long" in found[long]
    found = problems({"name": "Faces", "zoo": "mtcnn"})
    assert "DNS-1123" in found["Faces"]
    found = problems({"name": "faces", "zoo": "mtcnn"}, name="1zoo")
    assert "start with a letter" in found["faces"]


def test_duplicate_names_are_caught():
    found = problems({"name": "a", "zoo": "mtcnn"}, {"name": "a", "zoo": "mobilenet"})
    assert "twice" in found["a"]


def test_a_malformed_model_is_reported_not_raised():
    found = problems({"name": "odd", "zoo": "mtcnn", "replicas": "many"})
    assert "bad spec" in found["odd"]


def test_zoo_level_fields():
    body = zoo_body(SAMPLES["zoo-cpu"])
    body["spec"]["image"] = "reg/zoo:1"
    zoo = parse_zoo(body, CATALOG)
    assert (zoo.name, zoo.namespace, zoo.uid, zoo.generation, zoo.image) == (
        "demo", "ml", "uid-1234", 3, "reg/zoo:1",
    )  # fmt: skip


def test_zoo_entry_names_come_from_the_settings_or_the_catalog(tmp_path):
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"models": [{"name": "mtcnn"}, {"name": "mobilenet"}]}))
    assert load_zoo_entry_names(str(catalog)).names == {"mtcnn", "mobilenet"}
    assert load_zoo_entry_names(str(catalog), ["nsfw"]).names == {"nsfw"}
    missing = load_zoo_entry_names(str(tmp_path / "absent.json"))
    assert missing.names is None and "not checked" in missing.origin


def test_runtime_is_checked_against_the_gpu():
    litert_gpu = {**SAMPLES["zoo-gpu"], "runtime": "litert"}
    assert "runtime litert runs on the CPU" in problems(litert_gpu)["faces"]
    assert (
        "runtime must be one of" in problems({**SAMPLES["zoo-cpu"], "runtime": "onnx"})["classify"]
    )
    assert problems({**SAMPLES["zoo-cpu"], "runtime": "litert"}) == {}


@pytest.mark.parametrize(
    ("s3", "why"),
    [
        ({"endpoint": "store:9000", "bucket": "b", "key": "k"}, "endpoint must be http(s)"),
        ({"endpoint": "https://store", "bucket": "", "key": "k"}, "needs bucket and key"),
        ({"endpoint": "https://store", "bucket": "b", "key": "k", "secretName": "A_B"}, "Secret"),
        ({"endpoint": "https://store", "bucket": "b", "key": "k", "caBundle": "x"}, "PEM"),
    ],
)
def test_s3_sources_are_checked(s3, why):
    model = {**SAMPLES["s3-private-store"], "source": {"s3": s3, "sha256": "a" * 64}}
    assert why in problems(model)["stored"]
    unpinned = {**SAMPLES["s3-private-store"], "source": {"s3": s3 | {"bucket": "b"}}}
    assert "needs source.sha256" in problems(unpinned)["stored"]


def test_which_entries_run_on_litert_comes_from_the_catalog(tmp_path):
    catalog = tmp_path / "catalog.json"
    tflite = {"file": "m.tflite", "format": "tflite", "sha256": "b" * 64}
    graph = {"file": "m.pb", "format": "graphdef", "sha256": "a" * 64}
    catalog.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "mobilenet", "artifacts": [graph, tflite]},
                    {"name": "mtcnn", "artifacts": [graph, {**tflite, "pipeline": "mtcnn-nets"}]},
                    {"name": "nsfw", "artifacts": [graph]},
                ]
            }
        )
    )
    found = load_zoo_entry_names(str(catalog))
    assert found.names == {"mobilenet", "mtcnn", "nsfw"}
    assert found.litert == {"mobilenet", "mtcnn"} and found.pipelines == {"mtcnn"}
    named = load_zoo_entry_names(str(catalog), ["mobilenet"])
    assert named.names == {"mobilenet"} and named.litert == {"mobilenet", "mtcnn"}
    unknown = load_zoo_entry_names(str(tmp_path / "missing.json"), ["mtcnn"])
    assert unknown.names == {"mtcnn"} and unknown.litert == unknown.pipelines == frozenset()
