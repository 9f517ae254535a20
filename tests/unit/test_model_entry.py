"""A user's signature file: JSON or YAML, read as its author wrote it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelzoo_server.model_entry import from_files

pytestmark = pytest.mark.unit

SIGNATURE = {
    "task": "image-classification",
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 8, 8, 3]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 2]}],
    "preprocessing": {"size": [8, 8], "scale": 1e-05},
}


def test_a_json_number_with_an_exponent_stays_a_number(tmp_path: Path) -> None:
    """YAML 1.1 reads `1e-05` as a string; a JSON file is read as JSON."""
    path = tmp_path / "signature.json"
    path.write_text(json.dumps(SIGNATURE))
    entry = from_files(tmp_path / "g.pb", path, "m", None)
    assert entry.preprocessing.scale == 1e-05


def test_yaml_still_reads(tmp_path: Path) -> None:
    path = tmp_path / "signature.yaml"
    path.write_text(
        "task: tensor\ninputs: [{name: x, dtype: float32, shape: [2]}]\n"
        "outputs: [{name: y, dtype: float32, shape: [2]}]\n"
    )
    assert [t.name for t in from_files(tmp_path / "g.pb", path, "m", None).record.inputs] == ["x"]
