"""The real server on LiteRT: the same answers as on TensorFlow, and no TensorFlow loaded.

Each entry is served twice from the same built zoo, `--runtime litert` and then
`--runtime tensorflow` (one process at a time), and asked the same things over /infer
and over V2 with `tritonclient[http]`."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from modelzoo_server.model_entry import from_catalog
from modelzoo_server.tasks import TASKS
from tests import photos
from tests.servers import RunningServer, run_server

pytestmark = pytest.mark.integration


def _infer_label(server: RunningServer, jpeg: bytes) -> str:
    request = urllib.request.Request(
        f"{server.url}/infer", data=jpeg, headers={"Content-Type": "image/jpeg"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["predictions"][0]["label"]


def _v2_top_class(server: RunningServer, name: str, feed: np.ndarray) -> int:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    tensor = triton.InferInput("input", list(feed.shape), "FP32")
    tensor.set_data_from_numpy(feed)
    result = client.infer(name, [tensor])
    return int(result.as_numpy("probabilities")[0].argmax())


def _loads_tensorflow(server: RunningServer) -> bool:
    """Whether TensorFlow's shared library is mapped into the server process."""
    maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    return "libtensorflow" in maps


def _model_info(server: RunningServer) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
        text = response.read().decode()
    return next(line for line in text.splitlines() if line.startswith("modelzoo_model_info{"))


@pytest.mark.parametrize("name", ["mobilenet", "nsfw"])
def test_litert_answers_as_tensorflow_does(zoo_dir: Path, tmp_path: Path, name: str) -> None:
    entry = from_catalog(zoo_dir, name)
    task = TASKS[entry.task](entry)
    jpeg = photos.grace_hopper_jpeg()
    feed = task.preprocess(photos.grace_hopper(), task.options({}))["input"]
    seen = {}
    for runtime in ("litert", "tensorflow"):
        args = ["--zoo", name, "--model-dir", str(zoo_dir), "--runtime", runtime]
        with run_server(args, tmp_path / f"{runtime}.log") as server:
            seen[runtime] = (
                _infer_label(server, jpeg),
                _v2_top_class(server, name, feed),
                _loads_tensorflow(server),
                _model_info(server),
            )
    litert, tensorflow = seen["litert"], seen["tensorflow"]
    assert litert[:2] == tensorflow[:2]
    assert entry.labels[litert[1]] == litert[0]
    if name == "mobilenet":
        assert litert[0] == "military uniform"
    assert not litert[2], "a server on LiteRT mapped libtensorflow"
    assert tensorflow[2], "the check must see TensorFlow where it is loaded"
    assert 'runtime="litert"' in litert[3]
    assert 'runtime="tensorflow"' in tensorflow[3]


def test_auto_takes_litert_where_a_verified_tflite_exists(zoo_dir: Path, tmp_path: Path) -> None:
    with run_server(["--zoo", "emotion", "--model-dir", str(zoo_dir)], tmp_path / "s.log") as s:
        assert 'runtime="litert"' in _model_info(s)
        assert not _loads_tensorflow(s)


def test_litert_without_a_tflite_is_refused_in_one_line(zoo_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelzoo_server",
            "--zoo",
            "mtcnn",
            "--model-dir",
            str(zoo_dir),
            "--runtime",
            "litert",
            "--port",
            "0",
            "--grpc-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith(
        "modelzoo-server: refusing to serve: --runtime litert: model 'mtcnn' has no .tflite "
        "(not converted: no TFLite builtin kernel for"
    ), lines[0]
