"""`modelzoo-prepare` on a SavedModel: frozen into a `.pb` with its signature file, then
converted and verified like any `.pb` where it converts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from modelzoo_server.model_entry import from_files
from modelzoo_server.runtime import load_graph
from tests import saved_models

pytestmark = pytest.mark.integration


def _prepare(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "modelzoo_models.prepare", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_image_classifier_converts(tmp_path: Path) -> None:
    model = saved_models.keras_image_classifier(tmp_path / "classifier")
    [key] = (
        tf.saved_model.load(str(model)).signatures["serving_default"].structured_input_signature[1]
    )
    signature = tmp_path / "signature.json"
    signature.write_text(
        json.dumps(
            {
                "task": "image-classification",
                "inputs": [{"name": key, "dtype": "float32", "shape": [-1, 32, 32, 3]}],
                "outputs": [{"name": "output_0", "dtype": "float32", "shape": [-1, 5]}],
                "preprocessing": {"size": [32, 32], "scale": 0.0078125, "offset": -1.0},
                "labels": ["a", "b", "c", "d", "e"],
                "batchable": True,
            }
        )
    )
    out = tmp_path / "out" / "classifier.tflite"
    result = _prepare("--graph", str(model), "--signature", str(signature), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    artifact = json.loads(result.stdout)
    assert artifact["format"] == "tflite" and artifact["file"] == "classifier.tflite"
    assert artifact["verified"]["max_abs_diff"] <= 1e-3
    # The frozen graph and its bound signature serve what the SavedModel computes.
    entry = from_files(out.with_suffix(".pb"), out.with_suffix(".json"), "c", None)
    graph = load_graph(entry.path, entry.signature)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    expected = tf.saved_model.load(str(model)).signatures["serving_default"](**{key: x})
    np.testing.assert_allclose(
        graph.run({key: x})["output_0"], expected["output_0"].numpy(), atol=1e-5, rtol=0
    )


def test_a_tensor_model_is_frozen_but_keeps_tensorflow(tmp_path: Path) -> None:
    model = saved_models.two_inputs(tmp_path / "two")
    out = tmp_path / "two.tflite"
    result = _prepare("--graph", str(model), "--out", str(out))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "not converted: prepare verifies image models only" in result.stderr
    record = json.loads(out.with_suffix(".json").read_text())
    assert [t["name"] for t in record["signature"]["inputs"]] == ["a", "b"]
    assert [t["name"] for t in record["signature"]["outputs"]] == ["prod", "sum"]
    assert not out.exists()


def test_a_refused_savedmodel_writes_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    model = saved_models.writes_file(tmp_path / "writer", victim)
    out = tmp_path / "out" / "writer.tflite"
    result = _prepare("--graph", str(model), "--out", str(out))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("modelzoo-prepare: refused: op 'WriteFile'")
    )
    assert not victim.exists()
    assert list((tmp_path / "out").iterdir()) == []
