"""Open Inference Protocol with the real `tritonclient[http]`, against the real server process."""

from __future__ import annotations

import gzip
import http.client

import numpy as np
import pytest
import tritonclient.http as triton

from tests import photos
from tests.reference import iou, reference_faces

pytestmark = pytest.mark.integration


def _client(server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def _inputs(rgb: np.ndarray, binary: bool) -> list[triton.InferInput]:
    tensors = {
        "input": np.ascontiguousarray(rgb[..., ::-1], dtype=np.float32),
        "min_size": np.array(20.0, dtype=np.float32),
        "thresholds": np.array([0.6, 0.7, 0.8], dtype=np.float32),
        "factor": np.array(0.709, dtype=np.float32),
    }
    inputs = []
    for name, value in tensors.items():
        tensor = triton.InferInput(name, list(value.shape), "FP32")
        tensor.set_data_from_numpy(value, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_health_and_metadata(mtcnn_server) -> None:
    client = _client(mtcnn_server)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("mtcnn")
    meta = client.get_model_metadata("mtcnn")
    assert [i["name"] for i in meta["inputs"]] == ["input", "min_size", "thresholds", "factor"]
    assert meta["inputs"][0] == {"name": "input", "datatype": "FP32", "shape": [-1, -1, 3]}
    assert [o["name"] for o in meta["outputs"]] == ["box", "prob", "landmarks"]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_reference(mtcnn_server, binary: bool) -> None:
    rgb = photos.grace_hopper()
    outputs = [triton.InferRequestedOutput(n, binary_data=binary) for n in ("box", "prob")]
    result = _client(mtcnn_server).infer(
        "mtcnn", _inputs(rgb, binary), outputs=outputs, request_id="r-1"
    )
    assert result.get_response()["id"] == "r-1"
    boxes = result.as_numpy("box")  # y1 x1 y2 x2
    probs = result.as_numpy("prob")
    assert boxes.dtype == np.float32 and boxes.shape == (len(probs), 4)
    _assert_the_reference_faces(rgb, boxes)


def _assert_the_reference_faces(rgb: np.ndarray, boxes: np.ndarray) -> None:
    """`boxes` (y1 x1 y2 x2) are the faces the `mtcnn` package finds in `rgb`."""
    expected = reference_faces(rgb)
    assert len(boxes) == len(expected) >= 1
    ours = [[b[1], b[0], b[3], b[2]] for b in boxes.tolist()]
    for face in expected:
        assert max(iou(face["box"], box) for box in ours) >= 0.9


def test_infer_with_default_outputs_returns_all(mtcnn_server) -> None:
    result = _client(mtcnn_server).infer("mtcnn", _inputs(photos.coffee(), True))
    assert result.as_numpy("box").shape == (0, 4)
    assert result.as_numpy("landmarks").shape == (0, 10)


def test_bad_request_raises_a_readable_error(mtcnn_server) -> None:
    tensor = triton.InferInput("input", [2, 2], "FP32")
    tensor.set_data_from_numpy(np.zeros((2, 2), np.float32))
    with pytest.raises(triton.InferenceServerException, match="missing input tensor"):
        _client(mtcnn_server).infer("mtcnn", [tensor])


def _post(server, body, headers: dict[str, str], chunked: bool) -> tuple[int, bytes, dict]:
    connection = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=60)
    try:
        # A generator has no length: http.client sends it with Transfer-Encoding: chunked.
        payload = (body[i : i + 65536] for i in range(0, len(body), 65536)) if chunked else body
        connection.request(
            "POST", "/v2/models/mtcnn/infer", payload, headers, encode_chunked=chunked
        )
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def _answer(server, body: bytes, header_length: int, framing: str) -> triton.InferResult:
    headers = {"Inference-Header-Content-Length": str(header_length)}
    if framing == "gzip":
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    status, answer, answer_headers = _post(server, body, headers, chunked=framing == "chunked")
    assert status == 200, answer[:300]
    length = answer_headers.get("Inference-Header-Content-Length")
    return triton.InferResult.from_response_body(
        answer, header_length=int(length) if length is not None else None
    )


@pytest.mark.parametrize("framing", ["content-length", "gzip"])
def test_every_body_framing_gives_the_same_answer(mtcnn_server, framing: str) -> None:
    """The server reads a sized body into one buffer of its own; a chunked one, as aiohttp
    does (the independent path here): the same faces must come out either way, and they
    must be the `mtcnn` package's."""
    rgb = photos.grace_hopper()
    body, header_length = triton.InferenceServerClient.generate_request_body(_inputs(rgb, True))
    result = _answer(mtcnn_server, body, header_length, framing)
    by_aiohttp = _answer(mtcnn_server, body, header_length, "chunked")
    for name in ("box", "prob", "landmarks"):
        np.testing.assert_array_equal(result.as_numpy(name), by_aiohttp.as_numpy(name))
    _assert_the_reference_faces(rgb, result.as_numpy("box"))
