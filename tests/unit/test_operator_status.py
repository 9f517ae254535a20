"""The status: per-model phases, conditions, printer-column summaries."""

from __future__ import annotations

import copy

import pytest

from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import parse_zoo
from modelzoo_operator.status import deployment_phase, same_status, zoo_status
from tests.samples import CATALOG, SAMPLES, zoo_body

pytestmark = pytest.mark.unit
T0, T1 = "2030-01-01T00:00:00Z", "2030-01-01T00:05:00Z"


def deployment(replicas: int, ready: int, *, generation: int = 2, observed: int = 2, **status):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": status.pop("updated", replicas),
            **status,
        },
    }


def conditions(status: dict) -> dict[str, dict]:
    return {c["type"]: c for c in status["conditions"]}


def two_model_zoo():
    return parse_zoo(zoo_body(SAMPLES["zoo-gpu"], SAMPLES["zoo-cpu"]), CATALOG)


def test_deployment_phases():
    assert deployment_phase(None)[0] == "Pending"
    assert deployment_phase(deployment(2, 1))[:2] == ("Progressing", "1/2 replicas ready")
    assert deployment_phase(deployment(2, 2))[0] == "Ready"
    assert deployment_phase(deployment(2, 2, observed=1))[0] == "Progressing", "stale status"
    assert deployment_phase(deployment(2, 2, updated=1))[0] == "Progressing", "mid-rollout"
    assert deployment_phase(deployment(0, 0))[:2] == ("Ready", "scaled to zero")
    assert deployment_phase(deployment(1, 1), floor=2)[:2] == (
        "Progressing",
        "1/2 replicas ready",
    ), "an autoscaled model waits for the HPA's minReplicas"
    stuck = deployment(
        1, 0, conditions=[{"type": "Progressing", "status": "False",
                           "reason": "ProgressDeadlineExceeded", "message": "timed out"}],
    )  # fmt: skip
    phase, message, _, _ = deployment_phase(stuck)
    assert phase == "Failed" and "timed out" in message


def test_ready_only_when_every_model_has_its_ready_replicas():
    zoo = two_model_zoo()
    partly = zoo_status(
        zoo, {"faces": deployment(1, 1), "classify": deployment(2, 1)}, {}, Settings(), None, T0
    )
    assert conditions(partly)["Ready"]["status"] == "False"
    assert conditions(partly)["Progressing"]["status"] == "True"
    assert "classify: 1/2 replicas ready" in conditions(partly)["Ready"]["message"]
    assert partly["ready"] == "1/2"
    full = zoo_status(
        zoo, {"faces": deployment(1, 1), "classify": deployment(2, 2)}, {}, Settings(), partly, T1
    )
    assert conditions(full)["Ready"]["status"] == "True"
    assert conditions(full)["Ready"]["lastTransitionTime"] == T1
    assert conditions(full)["Progressing"]["status"] == "False"
    assert conditions(full)["Degraded"]["status"] == "False"
    assert conditions(full)["Degraded"]["lastTransitionTime"] == T0, "unchanged: time kept"
    assert full["ready"] == "2/2"
    assert full["modelNames"] == "faces,classify"
    assert full["gpus"] == 1
    assert full["observedGeneration"] == 3
    assert full["urls"] == (
        "http://demo-faces.ml.svc.cluster.local/infer,http://demo-classify.ml.svc.cluster.local/infer"
    )
    models = {m["name"]: m for m in full["models"]}
    assert models["classify"] == {
        "name": "classify",
        "replicas": 2,
        "readyReplicas": 2,
        "url": "http://demo-classify.ml.svc.cluster.local/infer",
        "grpcAddress": "demo-classify.ml.svc.cluster.local:8081",
        "phase": "Ready",
        "message": "2/2 replicas ready",
        "runtime": "tensorflow",
        "runtimeReason": "the zoo entry has no verified .tflite (see its catalog record)",
    }


def test_a_failed_model_degrades_the_zoo_with_its_reason():
    body = zoo_body(SAMPLES["zoo-cpu"], {"name": "x", "zoo": "resnet"})
    zoo = parse_zoo(body, CATALOG)
    status = zoo_status(zoo, {"classify": deployment(2, 2)}, {}, Settings(), None, T0)
    degraded = conditions(status)["Degraded"]
    assert degraded["status"] == "True" and degraded["reason"] == "ModelsFailed"
    assert "x: unknown zoo entry 'resnet'" in degraded["message"]
    assert conditions(status)["Ready"]["status"] == "False"
    models = {m["name"]: m for m in status["models"]}
    assert models["x"]["phase"] == "Failed" and "url" not in models["x"]
    assert models["classify"]["phase"] == "Ready"
    assert status["ready"] == "1/2"
    runtime = zoo_status(
        zoo, {"classify": deployment(2, 2)}, {"classify": "PVC gone"}, Settings(), None, T0
    )
    assert "classify: PVC gone" in conditions(runtime)["Degraded"]["message"]


def test_pending_models_report_their_spec_replicas():
    status = zoo_status(two_model_zoo(), {}, {}, Settings(), None, T0)
    assert {m["name"]: (m["phase"], m["replicas"]) for m in status["models"]} == {
        "faces": ("Pending", 1),
        "classify": ("Pending", 2),
    }


@pytest.mark.parametrize("autoscaler_class", ["hpa", "external"])
def test_an_autoscaled_model_is_ready_at_its_floor_and_reports_what_the_autoscaler_set(
    autoscaler_class,
):
    model = copy.deepcopy(SAMPLES["url-batching-autoscaling"])  # minReplicas 2
    model["autoscaling"]["autoscalerClass"] = autoscaler_class
    zoo = parse_zoo(zoo_body(model), CATALOG)

    def entry(deployment_now: dict) -> tuple[str, int]:
        (found,) = zoo_status(zoo, {"custom": deployment_now}, {}, Settings(), None, T0)["models"]
        return found["phase"], found["replicas"]

    assert entry(deployment(1, 1)) == ("Progressing", 2), "below the floor"
    assert entry(deployment(3, 3)) == ("Ready", 3), "scaled up by the autoscaler"


def test_same_status_ignores_nothing_it_writes():
    zoo = two_model_zoo()
    first = zoo_status(zoo, {}, {}, Settings(), None, T0)
    again = zoo_status(zoo, {}, {}, Settings(), first, T1)
    assert same_status(first, again), "a re-run changes nothing"
    assert same_status({**first, "kopf": {"x": 1}}, again), "other status fields are kept"
    later = zoo_status(zoo, {"faces": deployment(1, 1)}, {}, Settings(), first, T1)
    assert not same_status(first, later)
