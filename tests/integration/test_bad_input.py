"""Every kind of bad input gets a 4xx with a JSON reason, and the server keeps serving."""

from __future__ import annotations

import io
import json

import aiohttp
import numpy as np
import pytest
from PIL import Image

from tests import photos

pytestmark = pytest.mark.integration


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG")
    return out.getvalue()


def _form(data: bytes | None, **fields: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    if data is not None:
        form.add_field("image_file", data, filename="x", content_type="application/octet-stream")
    for key, value in fields.items():
        form.add_field(key, value)
    return form


GOOD = photos.encode_jpeg(photos.grace_hopper())
BIG_CANVAS = _png(3000, 2000)  # 6 Mpx of black compresses to a few kB: a pixel bomb here

CASES = {
    "not an image": (lambda: b"hello, I am text", 415, "not a supported image"),
    "truncated jpeg": (lambda: GOOD[: len(GOOD) // 3], 400, "cannot decode"),
    "empty body": (lambda: b"", 400, "empty image"),
    "pixel bomb": (lambda: BIG_CANVAS, 413, "pixels"),
    "tiff is not accepted": (
        lambda: _encoded(photos.coffee(), "TIFF"),
        415,
        "not a supported image",
    ),
}


def _encoded(rgb: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format=fmt)
    return out.getvalue()


async def _still_serving(client) -> None:
    response = await client.post("/infer", data=_form(GOOD))
    assert response.status == 200
    assert len((await response.json())["detections"]) == 1


async def _assert_error(response, status: int, words: str) -> None:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"} and words in body["error"], body


@pytest.mark.parametrize("case", CASES)
async def test_bad_image_gets_4xx_and_server_keeps_serving(mtcnn_client, case: str) -> None:
    make, status, words = CASES[case]
    await _assert_error(await mtcnn_client.post("/infer", data=_form(make())), status, words)
    await _assert_error(
        await mtcnn_client.post("/infer", data=make(), headers={"Content-Type": "image/jpeg"}),
        status,
        words,
    )
    await _still_serving(mtcnn_client)


async def test_body_over_the_size_cap_gets_413(mtcnn_client, mtcnn_settings) -> None:
    body = b"\xff" * (mtcnn_settings.max_body_bytes + 1)
    response = await mtcnn_client.post("/infer", data=body, headers={"Content-Type": "image/jpeg"})
    await _assert_error(response, 413, "larger than")
    await _still_serving(mtcnn_client)


@pytest.mark.parametrize(
    "value, words",
    [("abc", "must be a number"), ("-5", "between"), ("1e9", "between"), ("nan", "between")],
)
async def test_bad_detection_threshold(mtcnn_client, value: str, words: str) -> None:
    response = await mtcnn_client.post("/infer", data=_form(GOOD, detection_threshold=value))
    await _assert_error(response, 400, words)


async def test_missing_image_field(mtcnn_client) -> None:
    response = await mtcnn_client.post("/infer", data=_form(None, detection_threshold="20"))
    await _assert_error(response, 400, "image_file")


async def test_bad_format_option(mtcnn_client) -> None:
    response = await mtcnn_client.post("/infer?format=gif", data=_form(GOOD))
    await _assert_error(response, 400, "format")


async def test_unknown_model_is_404(mtcnn_client) -> None:
    for path in ("/v2/models/nope", "/v2/models/nope/ready", "/v2/models/mtcnn/versions/7"):
        await _assert_error(await mtcnn_client.get(path), 404, "unknown model")
    await _assert_error(
        await mtcnn_client.post("/v2/models/nope/infer", data=b"{}"), 404, "unknown model"
    )


def _v2(inputs: list[dict]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def _mtcnn_inputs(**override: dict) -> list[dict]:
    inputs = {
        "input": {"name": "input", "datatype": "FP32", "shape": [2, 2, 3], "data": [0.0] * 12},
        "min_size": {"name": "min_size", "datatype": "FP32", "shape": [], "data": [20.0]},
        "thresholds": {
            "name": "thresholds",
            "datatype": "FP32",
            "shape": [3],
            "data": [0.6, 0.7, 0.8],
        },
        "factor": {"name": "factor", "datatype": "FP32", "shape": [], "data": [0.709]},
    }
    for name, spec in override.items():
        if spec is None:
            inputs.pop(name)
        else:
            inputs[name] = {**inputs[name], **spec}
    return list(inputs.values())


V2_CASES = {
    "wrong dtype": (_mtcnn_inputs(factor={"datatype": "INT32", "data": [1]}), "datatype"),
    "wrong rank": (_mtcnn_inputs(thresholds={"shape": [1, 3]}), "shape"),
    "missing tensor": (_mtcnn_inputs(factor=None), "missing input"),
    "unknown tensor": (
        [*_mtcnn_inputs(), {"name": "extra", "datatype": "FP32", "shape": [1], "data": [1]}],
        "unknown input",
    ),
    "data does not fill shape": (_mtcnn_inputs(input={"shape": [4, 4, 3]}), "do not fill"),
    "unknown datatype": (_mtcnn_inputs(factor={"datatype": "FP128"}), "not supported"),
    "negative shape": (_mtcnn_inputs(input={"shape": [-2, 2, 3]}), "negative"),
    "NaN": (_mtcnn_inputs(factor={"data": [float("nan")]}), "NaN"),
}


@pytest.mark.parametrize("case", V2_CASES)
async def test_bad_v2_request(mtcnn_client, case: str) -> None:
    inputs, words = V2_CASES[case]
    response = await mtcnn_client.post("/v2/models/mtcnn/infer", data=_v2(inputs))
    await _assert_error(response, 400, words)
    await _still_serving(mtcnn_client)


async def test_v2_not_json(mtcnn_client) -> None:
    response = await mtcnn_client.post("/v2/models/mtcnn/infer", data=b"{not json")
    await _assert_error(response, 400, "not valid JSON")
