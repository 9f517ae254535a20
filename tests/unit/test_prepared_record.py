"""The prepare step's record of a user's graph: written, read back, matched to the graph
it was made from, and turned into the runtime the server picks (and why)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from modelzoo_models import prepared
from modelzoo_models.contract import (
    Artifact,
    ModelRecord,
    RecordError,
    Verification,
    parse_outcome,
)
from modelzoo_server.runtimes import LITERT, TENSORFLOW, choose, reason
from modelzoo_server.settings import parse_settings
from modelzoo_server.user_graph import graph_entry

pytestmark = pytest.mark.unit

SIGNATURE = {
    "task": "image-classification",
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 8, 8, 3]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 2]}],
    "preprocessing": {"size": [8, 8]},
}
NOT_CONVERTED = "not converted: no TFLite builtin kernel for 1 op(s): CropAndResize"


def _files(folder: Path, signature: dict = SIGNATURE) -> tuple[Path, Path]:
    """A user's graph (its bytes do not matter here) and signature file."""
    folder.mkdir(parents=True, exist_ok=True)
    graph, sig = folder / "model.pb", folder / "signature.json"
    graph.write_bytes(b"a graph")
    sig.write_text(json.dumps(signature))
    return graph, sig


def _write_record(into: Path, graph: Path, sig: Path, *, converted: bool) -> ModelRecord:
    """What `modelzoo-prepare --prepared` writes, made by hand."""
    into.mkdir(parents=True, exist_ok=True)
    record = ModelRecord.from_json(SIGNATURE, name="model")
    if converted:
        tflite = into / "model.tflite"
        tflite.write_bytes(b"a flatbuffer")
        digest = hashlib.sha256(tflite.read_bytes()).hexdigest()
        verified = Verification(3e-5, 1e-3, "4 images")
        record = replace(record, artifacts=(Artifact("tflite", tflite.name, digest, verified),))
    else:
        record = replace(record, notes={"tflite": NOT_CONVERTED})
    made_from = prepared.provenance(graph, None, sig, "serving_default")
    record = replace(record, origin=made_from)
    prepared.write(record, prepared.record_path(into, graph))
    return record


def _settings(graph: Path, sig: Path, *extra: str):
    return parse_settings(["--graph", str(graph), "--signature", str(sig), *extra], env={})


def test_the_record_reads_back_as_written(tmp_path: Path) -> None:
    graph, sig = _files(tmp_path / "user")
    written = _write_record(tmp_path / "prep", graph, sig, converted=True)
    path = tmp_path / "prep" / "model.prepared.json"
    assert prepared.record_path(tmp_path / "prep", graph) == path
    assert prepared.read(path) == written
    assert prepared.read(tmp_path / "prep" / "other.prepared.json") is None
    path.write_text("{not json")
    with pytest.raises(RecordError, match="unreadable"):
        prepared.read(path)


@pytest.mark.parametrize(
    ("name", "stem"),
    [("model.pb", "model"), ("model.tar.gz", "model"), ("my.model.pb", "my.model")],
)
def test_the_prepared_files_are_named_after_the_graph(name: str, stem: str) -> None:
    assert prepared.stem(Path("/nowhere") / name) == stem


def test_the_outcome_line_says_which_runtime_and_why(tmp_path: Path) -> None:
    graph, sig = _files(tmp_path / "user")
    converted = _write_record(tmp_path / "a", graph, sig, converted=True)
    line = prepared.outcome(converted)
    assert line == "litert: verified, max abs diff 3e-05 (tolerance 0.001)"
    assert parse_outcome(line) == (LITERT, "verified, max abs diff 3e-05 (tolerance 0.001)")
    not_converted = _write_record(tmp_path / "b", graph, sig, converted=False)
    assert prepared.outcome(not_converted) == f"tensorflow: {NOT_CONVERTED}"
    assert parse_outcome(prepared.outcome(not_converted)) == (TENSORFLOW, NOT_CONVERTED)
    assert parse_outcome("modelzoo-prepare: refused: op 'ReadFile' is not allowed") is None


def test_a_verified_tflite_is_served_on_litert(tmp_path: Path) -> None:
    graph, sig = _files(tmp_path / "user")
    _write_record(tmp_path / "prep", graph, sig, converted=True)
    entry = graph_entry(_settings(graph, sig, "--prepared", str(tmp_path / "prep")))
    assert choose(entry, "auto") == LITERT
    assert reason(entry, "auto", LITERT) == "verified .tflite, max abs diff 3e-05 (tolerance 0.001)"
    tflite = entry.record.artifact("tflite")
    assert tflite is not None
    # The .tflite lies in the prepare step's folder, the graph where the user put it.
    assert entry.artifact_path(tflite) == tmp_path / "prep" / "model.tflite"
    assert entry.path == graph
    assert entry.sha256 == hashlib.sha256(b"a graph").hexdigest()


def test_a_graph_that_did_not_convert_goes_to_tensorflow_with_the_reason(tmp_path: Path) -> None:
    graph, sig = _files(tmp_path / "user")
    _write_record(tmp_path / "prep", graph, sig, converted=False)
    entry = graph_entry(_settings(graph, sig, "--prepared", str(tmp_path / "prep")))
    assert choose(entry, "auto") == TENSORFLOW
    assert reason(entry, "auto", TENSORFLOW) == NOT_CONVERTED
    with pytest.raises(RecordError, match=r"--runtime litert: .* \(not converted: no TFLite"):
        choose(entry, "litert")


def test_a_record_of_another_graph_or_signature_is_refused(tmp_path: Path) -> None:
    graph, sig = _files(tmp_path / "user")
    _write_record(tmp_path / "prep", graph, sig, converted=True)
    args = ("--prepared", str(tmp_path / "prep"))
    graph.write_bytes(b"another graph")
    with pytest.raises(RecordError, match="made from another graph or signature file"):
        graph_entry(_settings(graph, sig, *args))
    graph.write_bytes(b"a graph")
    graph_entry(_settings(graph, sig, *args))  # the same again
    sig.write_text(json.dumps({**SIGNATURE, "labels": ["cat", "dog"]}))
    with pytest.raises(RecordError, match="made from another graph or signature file"):
        graph_entry(_settings(graph, sig, *args))
    # A pin the record was not made from.
    with pytest.raises(RecordError, match="made from another graph or signature file"):
        graph_entry(_settings(graph, sig, *args, "--sha256", "0" * 64))


def test_no_record_in_the_prepared_folder_is_refused(tmp_path: Path) -> None:
    graph, sig = _files(tmp_path / "user")
    with pytest.raises(RecordError, match=r"no prepare record .*model\.prepared\.json"):
        graph_entry(_settings(graph, sig, "--prepared", str(tmp_path / "empty")))


def test_tensorflow_and_tensor_models_skip_the_prepare_step(tmp_path: Path) -> None:
    """Neither reads a record nor runs modelzoo-prepare (the folder given does not exist)."""
    graph, sig = _files(tmp_path / "user")
    nowhere = ("--prepared", str(tmp_path / "nowhere"))
    entry = graph_entry(_settings(graph, sig, "--runtime", "tensorflow", *nowhere))
    assert choose(entry, "tensorflow") == TENSORFLOW
    tensor = {k: v for k, v in SIGNATURE.items() if k != "preprocessing"} | {"task": "tensor"}
    graph, sig = _files(tmp_path / "tensor", tensor)
    entry = graph_entry(_settings(graph, sig, *nowhere))
    assert choose(entry, "auto") == TENSORFLOW
    assert "verifies image models only" in reason(entry, "auto", TENSORFLOW)


def test_a_signature_files_own_artifacts_are_not_taken_for_the_graphs(tmp_path: Path) -> None:
    """A catalog record used as a signature file lists the zoo's .tflite: not this graph's."""
    tflite = Artifact("tflite", "m.tflite", "ab" * 32, Verification(0.0, 1e-3, "images"))
    record = {**SIGNATURE, "task": "tensor", "artifacts": [tflite.to_json()]}
    graph, sig = _files(tmp_path / "user", record)
    assert choose(graph_entry(_settings(graph, sig)), "auto") == TENSORFLOW


def test_prepared_goes_with_graph_only() -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--zoo", "mtcnn", "--prepared", "/prepared"], env={})
