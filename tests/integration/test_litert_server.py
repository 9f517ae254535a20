"""The real server on LiteRT: the same answers as on TensorFlow, and no TensorFlow loaded.

Each entry is served twice from the same built zoo, `--runtime litert` and then
`--runtime tensorflow` (one process at a time), and asked the same things over /infer
and over V2 with `tritonclient[http]`. A pool of interpreters answers concurrent requests
as one interpreter does, each alone: LiteRT does not batch."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from modelzoo_server.model import LITERT_UNBATCHED
from modelzoo_server.model_entry import from_catalog
from modelzoo_server.runtimes import LITERT, load_runtime
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


def _infer_faces(server: RunningServer, jpeg: bytes) -> list[dict]:
    request = urllib.request.Request(
        f"{server.url}/infer", data=jpeg, headers={"Content-Type": "image/jpeg"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)["detections"]


def test_mtcnn_on_litert_finds_the_faces_tensorflow_finds(zoo_dir: Path, tmp_path: Path) -> None:
    """The zoo's detector: its three networks on LiteRT, the pyramid and NMS in numpy."""
    jpeg = photos.encode_jpeg(photos.composite())
    seen = {}
    for runtime in ("auto", "tensorflow"):
        args = ["--zoo", "mtcnn", "--model-dir", str(zoo_dir), "--runtime", runtime]
        with run_server(args, tmp_path / f"{runtime}.log") as server:
            seen[runtime] = (
                _infer_faces(server, jpeg),
                _loads_tensorflow(server),
                _model_info(server),
            )
    (lite, lite_tf, lite_info), (graph, _, graph_info) = seen["auto"], seen["tensorflow"]
    assert len(graph) >= 4, "the composite holds faces at four scales"
    assert len(lite) == len(graph)
    for mine, reference in zip(lite, graph, strict=True):
        # Rounded to 0.01 px by the server; the model test bounds the raw values.
        np.testing.assert_allclose(mine["box"], reference["box"], atol=0.05)
        np.testing.assert_allclose(mine["landmarks"], reference["landmarks"], atol=0.05)
        assert abs(mine["score"] - reference["score"]) <= 1e-4
    assert not lite_tf, "a server on LiteRT mapped libtensorflow"
    assert 'runtime="litert"' in lite_info and 'runtime="tensorflow"' in graph_info


def test_auto_takes_litert_where_a_verified_tflite_exists(zoo_dir: Path, tmp_path: Path) -> None:
    with run_server(["--zoo", "emotion", "--model-dir", str(zoo_dir)], tmp_path / "s.log") as s:
        assert 'runtime="litert"' in _model_info(s)
        assert not _loads_tensorflow(s)


def _zoo_without_tflite(zoo_dir: Path, into: Path) -> Path:
    """A zoo whose mtcnn record has no .tflite, as a build where the graph did not convert."""
    catalog = json.loads((zoo_dir / "catalog.json").read_text())
    (record,) = [r for r in catalog["models"] if r["name"] == "mtcnn"]
    record["artifacts"] = [a for a in record["artifacts"] if a["format"] != "tflite"]
    record["notes"]["tflite"] = "not converted: no TFLite builtin kernel for 1 op(s): Log"
    into.mkdir()
    (into / "mtcnn.pb").symlink_to(zoo_dir / "mtcnn.pb")
    (into / "catalog.json").write_text(json.dumps({"models": [record]}))
    return into


def test_litert_without_a_tflite_is_refused_in_one_line(zoo_dir: Path, tmp_path: Path) -> None:
    model_dir = _zoo_without_tflite(zoo_dir, tmp_path / "zoo")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelzoo_server",
            "--zoo",
            "mtcnn",
            "--model-dir",
            str(model_dir),
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


def _v2_json(server: RunningServer, name: str, feed: np.ndarray) -> np.ndarray:
    """One V2 JSON request (urllib: one connection per call, safe from many threads)."""
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": list(feed.shape),
                "datatype": "FP32",
                "data": feed.ravel().tolist(),
            }
        ]
    }
    request = urllib.request.Request(
        f"{server.url}/v2/models/{name}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        output = json.load(response)["outputs"][0]
    return np.asarray(output["data"], np.float32).reshape(output["shape"])


def _get(server: RunningServer, path: str) -> bytes:
    with urllib.request.urlopen(f"{server.url}{path}", timeout=30) as response:
        return response.read()


def test_an_interpreter_pool_answers_concurrent_requests_unbatched(
    zoo_dir: Path, tmp_path: Path
) -> None:
    entry = from_catalog(zoo_dir, "emotion")
    rng = np.random.default_rng(3)
    feeds = [rng.random((1, 64, 64, 1), dtype=np.float32) for _ in range(16)]
    reference = load_runtime(entry, LITERT)
    expected = [reference.run({"input": feed})["probabilities"] for feed in feeds]
    args = ["--zoo", "emotion", "--model-dir", str(zoo_dir), "--interpreters", "2"]
    args += ["--intra-op-threads", "1", "--max-batch-size", "8", "--max-delay-ms", "20"]
    log = tmp_path / "server.log"
    with run_server(args, log) as server:
        parameters = json.loads(_get(server, "/v2/models/emotion"))["parameters"]
        with ThreadPoolExecutor(8) as clients:
            answers = list(clients.map(lambda feed: _v2_json(server, "emotion", feed), feeds))
        metrics = _get(server, "/metrics").decode()
    assert parameters["runtime"] == "litert"
    assert parameters["batching"] == LITERT_UNBATCHED
    text = log.read_text()
    assert "emotion: 2 LiteRT interpreter(s) × 1 thread(s)" in text
    assert f"emotion: dynamic batching {LITERT_UNBATCHED}" in text
    for answer, want in zip(answers, expected, strict=True):
        np.testing.assert_allclose(answer, want, rtol=1e-5, atol=1e-6)
    # Every graph call ran one request: as many calls as rows (with the warm-up's).
    rows = next(line for line in metrics.splitlines() if line.startswith("modelzoo_batch_size_sum"))
    calls = next(
        line for line in metrics.splitlines() if line.startswith("modelzoo_batch_size_count")
    )
    assert float(rows.split()[-1]) == float(calls.split()[-1]) >= len(feeds)
