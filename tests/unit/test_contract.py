"""The record the zoo writes, the server reads and the operator writes for user graphs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from modelzoo_models import contract
from modelzoo_models.catalog import ENTRIES
from modelzoo_models.contract import (
    Artifact,
    ModelRecord,
    Preprocessing,
    RecordError,
    Verification,
)
from modelzoo_server.tasks import TASKS

pytestmark = pytest.mark.unit

SHA = "ab" * 32
RECORD = {
    "name": "classify",
    "task": "image-classification",
    "signature": {
        "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 224, 224, 3]}],
        "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 3]}],
    },
    "preprocessing": {"size": [224, 224], "scale": 0.5, "offset": -1.0},
    "labels": ["a", "b", "c"],
    "batchable": True,
    "artifacts": [
        {"format": "graphdef", "file": "classify.pb", "sha256": SHA},
        {
            "format": "tflite",
            "file": "classify.tflite",
            "sha256": SHA,
            "verified": {"max_abs_diff": 2e-5, "tolerance": 1e-4, "inputs": "6 images"},
        },
    ],
}


def test_a_record_round_trips_through_json() -> None:
    record = ModelRecord.from_json(RECORD)
    again = ModelRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record
    assert record.artifact("graphdef") == Artifact("graphdef", "classify.pb", SHA)
    verified = Verification(max_abs_diff=2e-5, tolerance=1e-4, inputs="6 images")
    assert record.artifact("tflite") == Artifact("tflite", "classify.tflite", SHA, verified)
    assert record.inputs[0].tensor == "images:0"
    assert record.preprocessing == Preprocessing(size=(224, 224), scale=0.5, offset=-1.0)


def test_a_tflite_of_a_models_parts_names_its_pipeline() -> None:
    record = ModelRecord.from_json(_with("artifacts.1.pipeline", contract.MTCNN_NETS))
    tflite = record.artifact("tflite")
    assert tflite is not None and tflite.pipeline == contract.MTCNN_NETS
    assert ModelRecord.from_json(record.to_json()) == record
    assert "pipeline" not in ModelRecord.from_json(RECORD).to_json()["artifacts"][1]


@pytest.mark.parametrize("name", list(ENTRIES))
def test_every_zoo_entry_writes_a_record_the_contract_reads(name: str) -> None:
    artifact = Artifact("graphdef", f"{name}.pb", SHA)
    record = ENTRIES[name].record(labels=("x",), artifacts=(artifact,))
    assert ModelRecord.from_json(record.to_json()) == record


def test_a_signature_file_lists_its_tensors_at_the_top_level() -> None:
    record = ModelRecord.from_json({**RECORD["signature"], "task": "tensor"}, name="mine")
    assert (record.name, record.task, record.artifacts) == ("mine", "tensor", ())
    assert [t.name for t in record.outputs] == ["probabilities"]


def _with(path: str, value: object) -> dict:
    record = copy.deepcopy(RECORD)
    *parents, last = path.split(".")
    node = record
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return record


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("task", "segmentation", "task must be one of"),
        ("signature.inputs", [], "needs an input and an output"),
        ("signature.inputs.0.dtype", "complex64", "dtype must be one of"),
        ("signature.inputs.0.shape", [-2], "shape must be a list"),
        ("signature.inputs.0.range", [2, 1], "above high"),
        ("preprocessing.range", [0, 255], r"unknown key\(s\) \['range'\]"),
        ("preprocessing.channels", "CMYK", "channels must be one of"),
        ("preprocessing.resize", "lanczos", "resize must be one of"),
        ("preprocessing.size", [0, 10], "size must be"),
        ("preprocessing.scale", float("nan"), "scale must be a finite number"),
        ("labels", [1, 2], "labels must be strings"),
        ("batchable", "yes", "batchable must be"),
        ("artifacts.0.file", "../x.pb", "plain file name"),
        ("artifacts.0.sha256", "AB" * 32, "64 lowercase hex"),
        ("artifacts.0.format", "onnx", "artifact format"),
        ("artifacts.0.verified", RECORD["artifacts"][1]["verified"], "only one, carries"),
        ("artifacts.1.verified", None, "only one, carries"),
        ("artifacts.1.verified.max_abs_diff", 0.5, "exceeds tolerance"),
        ("artifacts.1.verified.inputs", "", "must be described"),
        ("artifacts.1.pipeline", "yolo", "pipeline must be one of"),
        ("artifacts.0.pipeline", "mtcnn-nets", "on a tflite artifact"),
    ],
)
def test_a_bad_record_is_refused_with_its_reason(path: str, value: object, reason: str) -> None:
    with pytest.raises(RecordError, match=reason) as refused:
        ModelRecord.from_json(_with(path, value))
    assert str(refused.value).startswith("model 'classify': ")


def test_every_image_task_of_the_contract_has_a_server_class() -> None:
    assert set(TASKS) == set(contract.TASKS) - {contract.TENSOR}


def test_refusals_share_one_family() -> None:
    assert issubclass(contract.RefusedGraph, contract.Unservable)
    assert issubclass(RecordError, contract.Unservable)


def test_sha256_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")
    expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert contract.sha256_file(tmp_path / "f") == expected
