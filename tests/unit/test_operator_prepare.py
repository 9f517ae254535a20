"""The `prepare-model` init container: which pods get it, what it runs and mounts, and how
its outcome line becomes the model's runtime in the status."""

from __future__ import annotations

import copy

import pytest

from modelzoo_models.prepare import argument_parser
from modelzoo_operator import builders
from modelzoo_operator.pod_runtime import model_runtimes, prepare_outcome
from modelzoo_operator.reconciler import zoo_prepares
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import ZooEntryNames, parse_zoo
from modelzoo_operator.status import model_runtime, zoo_status
from modelzoo_server.settings import parse_settings
from tests.samples import CATALOG, SAMPLES, SHA, SIGNATURE, built, zoo_body

pytestmark = pytest.mark.unit

URL = SAMPLES["url-batching-autoscaling"]  # an image classifier from a URL, on a CPU
PVC = {
    "name": "onpvc",
    "source": {"pvc": {"claimName": "graphs", "path": "v3/model.pb"}},
    "task": "image-classification",
    "signature": SIGNATURE,
    "replicas": 1,
    "gpu": 0,
}
LITERT_LINE = "litert: verified, max abs diff 3e-05 (tolerance 0.001)"
TF_LINE = "tensorflow: not converted: no TFLite builtin kernel for 1 op(s): CropAndResize"


def pod_spec(model: dict) -> dict:
    (deployment,) = [m for m in built(model) if m["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]


def init_names(model: dict) -> list[str]:
    return [c["name"] for c in pod_spec(model).get("initContainers", [])]


def test_a_fetched_graph_is_prepared_after_the_fetch() -> None:
    spec = pod_spec(URL)
    fetch, prepare = spec["initContainers"]
    assert (fetch["name"], prepare["name"]) == ("fetch-model", "prepare-model")
    assert prepare["command"] == ["modelzoo-prepare"]
    assert prepare["image"] == fetch["image"] == spec["containers"][0]["image"]
    # The CLI takes exactly these flags.
    args = argument_parser().parse_args(prepare["args"])
    assert str(args.graph) == "/models/model.pb" and args.sha256 == SHA
    assert str(args.signature) == "/etc/modelzoo/signature.json"
    assert str(args.prepared) == "/prepared"
    assert str(args.termination_log) == "/dev/termination-log"
    assert prepare["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert prepare["securityContext"] == fetch["securityContext"]
    assert prepare["resources"] == builders.PREPARE_RESOURCES
    mounts = {m["name"]: m for m in prepare["volumeMounts"]}
    assert mounts["model"]["readOnly"] and mounts["signature"]["readOnly"]
    assert not mounts["prepared"].get("readOnly")
    # The server reads the record, read-only, and converts nothing itself.
    (server,) = spec["containers"]
    parsed = parse_settings(server["args"], env={})
    assert str(parsed.prepared) == "/prepared" and parsed.runtime == "auto"
    served = {m["name"]: m for m in server["volumeMounts"]}
    assert served["prepared"] == {"name": "prepared", "mountPath": "/prepared", "readOnly": True}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes["prepared"] and "emptyDir" in volumes["model"]


def test_a_pvc_graph_is_prepared_into_its_own_volume() -> None:
    spec = pod_spec(PVC)
    (prepare,) = spec["initContainers"]
    assert prepare["name"] == "prepare-model"
    args = argument_parser().parse_args(prepare["args"])
    assert str(args.graph) == "/models/v3/model.pb" and args.sha256 is None
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["model"]["persistentVolumeClaim"]["readOnly"]
    assert "emptyDir" in volumes["prepared"]
    mounts = {m["name"]: m for m in prepare["volumeMounts"]}
    assert mounts["model"]["readOnly"] and not mounts["prepared"].get("readOnly")


@pytest.mark.parametrize(
    "model",
    [
        SAMPLES["zoo-cpu"],
        SAMPLES["zoo-gpu"],
        {**PVC, "gpu": 1},  # TensorFlow on a GPU
        {**PVC, "runtime": "tensorflow"},
        SAMPLES["s3-private-store"],  # a tensor model: verified on images only
    ],
    ids=["zoo-cpu", "zoo-gpu", "gpu", "runtime-tensorflow", "tensor"],
)
def test_no_prepare_step_where_litert_cannot_serve_it(model: dict) -> None:
    assert builders.PREPARE_CONTAINER not in init_names(model)
    spec = pod_spec(model)
    assert "prepared" not in {v["name"] for v in spec["volumes"]}
    assert "--prepared" not in spec["containers"][0]["args"]


def test_runtime_litert_and_an_explicit_auto_on_a_gpu_are_prepared() -> None:
    """The spec's runtime wins over the GPU default: auto may pick LiteRT there too."""
    assert builders.PREPARE_CONTAINER in init_names({**PVC, "runtime": "litert"})
    assert builders.PREPARE_CONTAINER in init_names({**PVC, "gpu": 1, "runtime": "auto"})


def _pod(model: str, name: str, created: str, *statuses: dict, deleting: bool = False) -> dict:
    meta = {
        "name": name,
        "creationTimestamp": created,
        "labels": {builders.LABEL_MODEL: model},
    }
    if deleting:
        meta["deletionTimestamp"] = created
    return {"metadata": meta, "status": {"initContainerStatuses": list(statuses)}}


def _prepare_status(message: str, code: int = 0, key: str = "state") -> dict:
    done = {"terminated": {"exitCode": code, "reason": "Completed", "message": message}}
    return {"name": "prepare-model", key: done}


def test_the_outcome_is_read_from_the_prepare_containers_termination_message() -> None:
    assert prepare_outcome(_pod("m", "p", "t", _prepare_status(LITERT_LINE))) == (
        "litert",
        "verified, max abs diff 3e-05 (tolerance 0.001)",
    )
    # After a sandbox restart the container runs again; its last run still tells.
    waiting = {**_prepare_status(TF_LINE, key="lastState"), "state": {"running": {}}}
    assert prepare_outcome(_pod("m", "p", "t", waiting))[0] == "tensorflow"
    # A refusal is a failure (pod_failures.py), not an outcome; a fetch says nothing.
    refused = _prepare_status("modelzoo-prepare: refused: op 'ReadFile' is not allowed", 2)
    assert prepare_outcome(_pod("m", "p", "t", refused)) is None
    fetch = {"name": "fetch-model", "state": {"terminated": {"exitCode": 0, "message": "x"}}}
    assert prepare_outcome(_pod("m", "p", "t", fetch)) is None


def test_the_newest_pod_speaks_for_its_model() -> None:
    pods = [
        _pod("a", "a-old", "2030-01-01T00:00:00Z", _prepare_status(TF_LINE)),
        _pod("a", "a-new", "2030-01-01T00:05:00Z", _prepare_status(LITERT_LINE)),
        _pod("a", "a-newest-starting", "2030-01-01T00:06:00Z"),
        _pod("b", "b-gone", "2030-01-01T00:09:00Z", _prepare_status(LITERT_LINE), deleting=True),
        _pod("b", "b", "2030-01-01T00:01:00Z", _prepare_status(TF_LINE)),
    ]
    found = model_runtimes(pods)
    assert found["a"][0] == "litert"
    assert found["b"] == ("tensorflow", TF_LINE.removeprefix("tensorflow: "))


def _zoo(*models: dict, entries: ZooEntryNames = CATALOG):
    zoo = parse_zoo(zoo_body(*models), entries)
    assert not zoo.problems, zoo.problems
    return zoo


def test_the_status_says_which_runtime_and_why() -> None:
    entries = ZooEntryNames(frozenset({"mobilenet", "mtcnn"}), "test", frozenset({"mobilenet"}))
    zoo = _zoo(
        {"name": "lite", "zoo": "mobilenet", "gpu": 0, "replicas": 1},
        {"name": "faces", "zoo": "mtcnn", "gpu": 0, "replicas": 1},
        {"name": "big", "zoo": "mobilenet", "gpu": 1, "replicas": 1},
        {**PVC, "name": "mine"},
        {**PVC, "name": "pinned", "runtime": "tensorflow"},
        copy.deepcopy(SAMPLES["s3-private-store"]),
        entries=entries,
    )
    by_name = {m.name: m for m in zoo.models}
    assert model_runtime(by_name["lite"], None) == ("litert", "the zoo entry's verified .tflite")
    assert model_runtime(by_name["faces"], None)[0] == "tensorflow"
    assert model_runtime(by_name["big"], None) == (
        "tensorflow",
        "a GPU pod runs the graph on TensorFlow",
    )
    assert model_runtime(by_name["pinned"], None)[1] == "the spec asks for runtime tensorflow"
    assert "tensor model" in model_runtime(by_name["stored"], None)[1]
    # A prepared graph: unknown until a pod's prepare step says.
    assert model_runtime(by_name["mine"], None) == ("", "")
    outcome = ("tensorflow", "not converted: no TFLite builtin kernel for 1 op(s): Log")
    assert model_runtime(by_name["mine"], outcome) == outcome


def test_the_runtime_reaches_the_zoo_status() -> None:
    zoo = _zoo(PVC)
    unknown = zoo_status(zoo, {}, {}, Settings(), None, "2030-01-01T00:00:00Z")
    (entry,) = unknown["models"]
    assert "runtime" not in entry and "runtimeReason" not in entry
    outcome = ("litert", "verified, max abs diff 3e-05 (tolerance 0.001)")
    known = zoo_status(
        zoo, {}, {}, Settings(), None, "2030-01-01T00:00:00Z", runtimes={"onpvc": outcome}
    )
    (entry,) = known["models"]
    assert (entry["runtime"], entry["runtimeReason"]) == outcome


def test_pods_are_listed_for_prepared_models_only() -> None:
    assert zoo_prepares(_zoo(PVC))
    assert not zoo_prepares(_zoo(SAMPLES["zoo-cpu"], SAMPLES["s3-private-store"]))
