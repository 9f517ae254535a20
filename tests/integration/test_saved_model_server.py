"""SavedModels served by the real server: `--graph` a folder or a `.tar.gz`, pinned by
sha256, answering REST V2 and gRPC as `tf.saved_model.load(...).signatures[...]` does on
the same tensors."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from PIL import Image

from tests import saved_models
from tests.servers import RunningServer, run_server

pytestmark = pytest.mark.integration

# The server runs the frozen graph on TensorFlow (a --graph model has no verified .tflite).
TOLERANCE = 1e-5
V2 = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32"}


def _folder_sha256(folder: Path) -> str:
    """The documented listing digest, written with coreutils (independent of the code)."""
    script = (
        "cd \"$1\" && find . -type f | sed 's|^\\./||' | LC_ALL=C sort "
        '| while read -r f; do sha256sum "$f"; done | sha256sum | cut -d" " -f1'
    )
    done = subprocess.run(["bash", "-c", script, "-", str(folder)], capture_output=True, text=True)
    return done.stdout.strip()


def _expected(folder: Path, signature: str, tensors: dict[str, np.ndarray]) -> dict:
    function = tf.saved_model.load(str(folder)).signatures[signature]
    return {
        k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in tensors.items()}).items()
    }


def _served(server: RunningServer, name: str, tensors: dict[str, np.ndarray]) -> list[dict]:
    """The outputs over REST V2 (tritonclient.http) and over gRPC (tritonclient.grpc)."""
    answers = []
    for module, client in (
        (triton_http, triton_http.InferenceServerClient(server.url.removeprefix("http://"))),
        (triton_grpc, triton_grpc.InferenceServerClient(server.grpc_address)),
    ):
        inputs = []
        for key, value in tensors.items():
            tensor = module.InferInput(key, list(value.shape), V2[value.dtype])
            tensor.set_data_from_numpy(value)
            inputs.append(tensor)
        metadata = client.get_model_metadata(
            name, **({"as_json": True} if module is triton_grpc else {})
        )
        result = client.infer(name, inputs)
        answers.append({o["name"]: result.as_numpy(o["name"]) for o in metadata["outputs"]})
    return answers


def _assert_close(served: list[dict], expected: dict) -> None:
    for answer in served:
        assert set(answer) == set(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(answer[key], value, rtol=0, atol=TOLERANCE, err_msg=key)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("saved")


@pytest.fixture(scope="module")
def keras_model(folder: Path) -> Path:
    return saved_models.keras_dense(folder / "dense")


@pytest.fixture(scope="module")
def module_model(folder: Path) -> Path:
    return saved_models.two_inputs(folder / "two")


def test_a_keras_folder_pinned_by_its_digest(keras_model: Path, tmp_path: Path) -> None:
    args = ["--graph", str(keras_model), "--sha256", _folder_sha256(keras_model)]
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    with run_server(args, tmp_path / "server.log") as server:
        metadata = triton_http.InferenceServerClient(
            server.url.removeprefix("http://")
        ).get_model_metadata("dense")
        served = _served(server, "dense", {"features": x})
    # Names, dtypes and shapes come from the SavedModel's own signature.
    function = tf.saved_model.load(str(keras_model)).signatures["serving_default"]
    [key] = function.structured_input_signature[1]
    assert metadata["inputs"] == [{"name": key, "datatype": "FP32", "shape": [-1, 4]}]
    [out] = function.structured_outputs
    assert metadata["outputs"] == [{"name": out, "datatype": "FP32", "shape": [-1, 3]}]
    _assert_close(served, _expected(keras_model, "serving_default", {"features": x}))


def test_a_multi_input_module_as_a_tar_gz(module_model: Path, tmp_path: Path) -> None:
    archive = saved_models.tar_gz(module_model, tmp_path / "two.tar.gz")
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    rng = np.random.default_rng(2)
    tensors = {
        "a": rng.standard_normal((3, 2)).astype(np.float32),
        "b": rng.standard_normal((3, 3)).astype(np.float32),
    }
    with run_server(["--graph", str(archive), "--sha256", sha], tmp_path / "s.log") as server:
        served = _served(server, "two", tensors)
    _assert_close(served, _expected(module_model, "serving_default", tensors))


def test_another_signature_with_a_signature_file(module_model: Path, tmp_path: Path) -> None:
    """--signature-name picks the signature; a signature file names its keys (here a
    fixed batch size and only some outputs) and the server points them at the graph."""
    signature = tmp_path / "signature.json"
    signature.write_text(
        json.dumps(
            {
                "task": "tensor",
                "inputs": [
                    {"name": "a", "dtype": "float32", "shape": [2, 2]},
                    {"name": "times", "dtype": "int32", "shape": []},
                ],
                "outputs": [{"name": "out", "dtype": "float32", "shape": [2, 3]}],
            }
        )
    )
    tensors = {
        "a": np.array([[1, 2], [3, -4]], dtype=np.float32),
        "times": np.array(3, dtype=np.int32),
    }
    args = [
        "--graph", str(module_model), "--signature", str(signature),
        "--signature-name", "scaled", "--name", "scaled",
    ]  # fmt: skip
    with run_server(args, tmp_path / "s.log") as server:
        served = _served(server, "scaled", tensors)
    _assert_close(served, _expected(module_model, "scaled", tensors))


def test_an_image_classifier_answers_infer_as_its_signature_does(tmp_path: Path) -> None:
    """/infer on a SavedModel classifier: a 32x32 PNG (no resize) becomes pixels * scale +
    offset, and the scores are the signature's on that tensor."""
    model = saved_models.keras_image_classifier(tmp_path / "classifier")
    signature = tmp_path / "signature.json"
    scale, offset = 1 / 127.5, -1.0
    signature.write_text(
        json.dumps(
            {
                "task": "image-classification",
                "inputs": [{"name": "image", "dtype": "float32", "shape": [-1, 32, 32, 3]}],
                "outputs": [{"name": "output_0", "dtype": "float32", "shape": [-1, 5]}],
                "preprocessing": {"size": [32, 32], "scale": scale, "offset": offset},
                "labels": ["a", "b", "c", "d", "e"],
            }
        )
    )
    rgb = np.random.default_rng(5).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    args = ["--graph", str(model), "--signature", str(signature), "--name", "classifier"]
    with run_server(args, tmp_path / "s.log") as server:
        request = urllib.request.Request(
            f"{server.url}/infer?top_k=5", data=png.getvalue(), method="POST",
            headers={"Content-Type": "image/png"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = json.loads(response.read())["predictions"]
    pixels = rgb.astype(np.float32)[None] * scale + offset
    expected = _expected(model, "serving_default", {"image": pixels})["output_0"][0]
    got = np.zeros(5, dtype=np.float32)
    for p in predictions:
        got[p["class_id"]] = p["score"]
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    assert predictions[0]["class_id"] == int(np.argmax(expected))
