"""`modelzoo-server --graph` on a user's own graph: prepared first, then served on LiteRT
where it converts and verifies, on TensorFlow (with the reason in the log) where not.

The graphs are copies of zoo graphs in a folder of the test's own, served with a
signature file as a user writes one (the catalog record without its artifacts)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from tests.graphs import hostile_graphs, write_signature
from tests.servers import RunningServer, run_server

pytestmark = pytest.mark.integration


def _user_copy(zoo_dir: Path, name: str, folder: Path) -> tuple[Path, Path, dict]:
    """(graph, signature file, record) of a zoo entry, as a user's files."""
    folder.mkdir(parents=True, exist_ok=True)
    graph = Path(shutil.copy(zoo_dir / f"{name}.pb", folder / f"{name}.pb"))
    record = json.loads((zoo_dir / f"{name}.meta.json").read_text())
    signature = {k: v for k, v in record.items() if k not in ("artifacts", "notes")}
    (folder / "signature.json").write_text(json.dumps(signature))
    return graph, folder / "signature.json", record


def _metrics(server: RunningServer) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=30) as response:
        return response.read().decode()


def _tensorflow_answer(graph: Path, record: dict, x: np.ndarray) -> np.ndarray:
    """The graph run by TensorFlow in this process, the reference for the served answer."""
    import tensorflow as tf

    definition = tf.compat.v1.GraphDef()
    definition.ParseFromString(graph.read_bytes())
    with tf.Graph().as_default() as g:
        tf.import_graph_def(definition, name="")
    signature = record["signature"]
    with tf.compat.v1.Session(graph=g) as session:
        return session.run(signature["outputs"][0]["tensor"], {signature["inputs"][0]["tensor"]: x})


def test_a_graph_that_converts_is_served_on_litert(zoo_dir: Path, tmp_path: Path) -> None:
    graph, signature, record = _user_copy(zoo_dir, "emotion", tmp_path / "mine")
    x = np.random.default_rng(7).uniform(-1, 1, (3, 64, 64, 1)).astype(np.float32)
    log = tmp_path / "server.log"
    with run_server(["--graph", str(graph), "--signature", str(signature)], log) as server:
        info = _metrics(server)
        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        served = client.infer("emotion", [tensor]).as_numpy("probabilities")
        maps = Path(f"/proc/{server.process.pid}/maps").read_text()
    assert 'runtime="litert"' in info
    assert "libtensorflow" not in maps, "the prepare step must not leave TensorFlow behind"
    text = log.read_text()
    assert "emotion runs on litert: verified .tflite, max abs diff" in text
    tolerance = next(a for a in record["artifacts"] if a["format"] == "tflite")["verified"]
    expected = _tensorflow_answer(graph, record, x)
    np.testing.assert_allclose(served, expected, rtol=0, atol=tolerance["tolerance"])
    assert (served.argmax(-1) == expected.argmax(-1)).all()
    # The user's folder is left as it was: the server prepared into a folder of its own.
    assert sorted(p.name for p in graph.parent.iterdir()) == ["emotion.pb", "signature.json"]


def test_a_graph_that_does_not_convert_is_served_on_tensorflow(
    zoo_dir: Path, tmp_path: Path
) -> None:
    graph, signature, _ = _user_copy(zoo_dir, "mtcnn", tmp_path / "mine")
    log = tmp_path / "server.log"
    with run_server(["--graph", str(graph), "--signature", str(signature)], log) as server:
        info = _metrics(server)
    assert 'runtime="tensorflow"' in info
    reason = "mtcnn runs on tensorflow: not converted: no TFLite builtin kernel for"
    assert reason in log.read_text()


def test_litert_asked_for_a_graph_that_does_not_convert_is_refused(
    zoo_dir: Path, tmp_path: Path
) -> None:
    graph, signature, _ = _user_copy(zoo_dir, "mtcnn", tmp_path / "mine")
    command = [
        sys.executable, "-m", "modelzoo_server", "--graph", str(graph),
        "--signature", str(signature), "--runtime", "litert", "--port", "0",
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("modelzoo-server:")]
    assert line.startswith("modelzoo-server: refusing to serve: --runtime litert: model 'mtcnn'")
    assert "not converted: no TFLite builtin kernel for" in line


def test_the_init_containers_record_is_read_not_remade(zoo_dir: Path, tmp_path: Path) -> None:
    """What a pod does: `modelzoo-prepare --prepared DIR` (the init container), then the
    server with `--prepared DIR`, which converts nothing (no TensorFlow in it at all)."""
    graph, signature, _ = _user_copy(zoo_dir, "emotion", tmp_path / "mine")
    prepared, term = tmp_path / "prepared", tmp_path / "termination-log"
    command = [
        sys.executable, "-m", "modelzoo_models.prepare", "--graph", str(graph),
        "--signature", str(signature), "--prepared", str(prepared),
        "--termination-log", str(term),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert term.read_text().startswith("litert: verified, max abs diff ")
    assert done.stdout.strip() == term.read_text().strip()
    args = ["--graph", str(graph), "--signature", str(signature), "--prepared", str(prepared)]
    log = tmp_path / "server.log"
    with run_server(args, log) as server:
        info = _metrics(server)
    assert 'runtime="litert"' in info
    assert "preparing" not in log.read_text()


def test_a_refused_image_graph_stops_the_prepare_step_and_the_server(tmp_path: Path) -> None:
    """The allowlist runs first in the prepare step too: one line, exit 2, no record, and
    the victim file untouched (the init container then fails the pod with that line)."""
    victim = tmp_path / "victim.txt"
    graph = hostile_graphs(tmp_path, victim)["WriteFile"]
    image = {
        "task": "image-classification",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 4]}],
    }
    signature = write_signature(tmp_path / "signature.json", image)
    prepared, term = tmp_path / "prepared", tmp_path / "termination-log"
    command = [
        sys.executable, "-m", "modelzoo_models.prepare", "--graph", str(graph),
        "--signature", str(signature), "--prepared", str(prepared),
        "--termination-log", str(term),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert term.read_text().startswith("modelzoo-prepare: refused: op 'WriteFile'")
    assert not list(prepared.glob("*.prepared.json"))
    command = [
        sys.executable, "-m", "modelzoo_server", "--graph", str(graph),
        "--signature", str(signature), "--port", "0",
    ]  # fmt: skip
    served = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert served.returncode == 2
    last = served.stderr.strip().splitlines()[-1]
    assert last.startswith("modelzoo-server: refusing to serve: op 'WriteFile'"), last
    assert not victim.exists()
