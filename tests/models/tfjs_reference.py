"""Runs ORIGINAL TF.js graph models in Node (pure-JS @tensorflow/tfjs, cpu backend).

The independent reference for the converted graphs: `models/reference/run_graph_model.js`
loads model.json + shards from the pinned npm packages and runs `model.execute`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelzoo_models.npm_sources import node_modules

SCRIPT = (
    Path(__file__).resolve().parents[2]
    / "models"
    / "modelzoo_models"
    / "reference"
    / "run_graph_model.js"
)


@dataclass(frozen=True)
class ReferenceRun:
    outputs: dict[str, np.ndarray]
    ms: float  # model.execute + reading the outputs, in the tfjs cpu backend


def run_tfjs(
    model_json: Path,
    runs: Sequence[Mapping[str, np.ndarray]],
    outputs: Sequence[str],
    timeout: float = 600,
) -> list[ReferenceRun]:
    """Feed each mapping {input node name: array} to the original model; one Node process."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed: the TF.js reference runs need Node.js")
    with tempfile.TemporaryDirectory(prefix="tfjs-ref-") as tmp:
        exchange = Path(tmp)
        request = {"outputs": list(outputs), "runs": []}
        for r, feeds in enumerate(runs):
            inputs = []
            for i, (name, value) in enumerate(feeds.items()):
                value = np.ascontiguousarray(value)
                dtype = {"float32": "float32", "int32": "int32"}[value.dtype.name]
                file = f"in-{r}-{i}.bin"
                (exchange / file).write_bytes(value.astype(value.dtype.newbyteorder("<")).tobytes())
                inputs.append(
                    {"name": name, "dtype": dtype, "shape": list(value.shape), "file": file}
                )
            request["runs"].append({"inputs": inputs})
        (exchange / "request.json").write_text(json.dumps(request))
        done = subprocess.run(
            [node, str(SCRIPT), str(node_modules()), str(model_json), str(exchange)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"TF.js reference run failed:\n{done.stderr[-4000:]}")
        response = json.loads((exchange / "response.json").read_text())
        results = []
        for run in response["runs"]:
            arrays = {}
            for out in run["outputs"]:
                dtype = {"float32": "<f4", "int32": "<i4", "bool": "u1"}[out["dtype"]]
                raw = np.frombuffer((exchange / out["file"]).read_bytes(), dtype=dtype)
                arrays[out["name"]] = raw.reshape(out["shape"]).copy()
            results.append(ReferenceRun(arrays, float(run["ms"])))
        return results
