"""Which runtime a model gets: the flag, its environment variable, and what the record has."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from modelzoo_models.contract import Artifact, ModelRecord, RecordError, Verification
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.runtimes import LITERT, TENSORFLOW, choose
from modelzoo_server.settings import parse_settings

pytestmark = pytest.mark.unit

SHA = "ab" * 32
SIGNATURE = {
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 4]}],
}
GRAPH = Artifact("graphdef", "m.pb", SHA)
TFLITE = Artifact("tflite", "m.tflite", SHA, Verification(1e-6, 1e-5, "4 images"))


def _entry(*artifacts: Artifact, notes: dict[str, str] | None = None) -> ModelEntry:
    record = ModelRecord.from_json({"signature": SIGNATURE, "notes": notes or {}}, name="m")
    record = replace(record, artifacts=artifacts)
    return ModelEntry.of(record, Path("/zoo/m.pb"), "m", SHA)


def test_auto_takes_litert_only_where_a_verified_tflite_exists() -> None:
    assert choose(_entry(GRAPH, TFLITE), "auto") == LITERT
    assert choose(_entry(GRAPH), "auto") == TENSORFLOW


def test_an_explicit_runtime_is_kept() -> None:
    assert choose(_entry(GRAPH, TFLITE), "tensorflow") == TENSORFLOW
    assert choose(_entry(GRAPH, TFLITE), "litert") == LITERT


def test_litert_without_a_tflite_says_why() -> None:
    entry = _entry(GRAPH, notes={"tflite": "not converted: no TFLite builtin kernel for Log"})
    with pytest.raises(RecordError, match=r"has no \.tflite \(not converted: no TFLite builtin"):
        choose(entry, "litert")
    with pytest.raises(RecordError, match=r"lists no verified \.tflite"):
        choose(_entry(GRAPH), "litert")


def test_the_flag_and_its_environment_variable() -> None:
    assert parse_settings(["--zoo", "m"], env={}).runtime == "auto"
    assert parse_settings(["--zoo", "m"], env={"MODELZOO_RUNTIME": "litert"}).runtime == "litert"
    flag = ["--zoo", "m", "--runtime", "tensorflow"]
    assert parse_settings(flag, env={"MODELZOO_RUNTIME": "litert"}).runtime == "tensorflow"


@pytest.mark.parametrize(
    ("argv", "env"),
    [(["--runtime", "onnx"], {}), ([], {"MODELZOO_RUNTIME": "onnx"})],
    ids=["flag", "environment"],
)
def test_an_unknown_runtime_is_a_usage_error(argv: list[str], env: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(["--zoo", "m", *argv], env=env)
    assert exited.value.code == 2
