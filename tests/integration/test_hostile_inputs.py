"""A corpus of hostile uploads and tensors, each with its expected answer, on the real process.

Every case must get its status with a JSON reason; the process must not crash
and its memory must stay bounded; a good request must still succeed afterwards.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests import photos

pytestmark = pytest.mark.integration


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height pixels but carries almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (32, 32), color) for color in ("red", "green", "blue")]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)


def _polyglot() -> bytes:
    """A real JPEG with an HTML/script payload appended: decoded as the JPEG it is."""
    return photos.grace_hopper_jpeg() + b"<html><script>alert(1)</script></html>PK\x03\x04"


def _corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(4096) + data[middle + 4096 :]


GRACE = photos.grace_hopper()
IMAGE_CASES: dict[str, tuple[Callable[[], bytes], int, str]] = {
    "truncated jpeg": (lambda: photos.grace_hopper_jpeg()[:5000], 400, "cannot decode"),
    "truncated png": (lambda: photos.encode_png(GRACE)[:3000], 400, "cannot decode"),
    "truncated webp": (lambda: _save(Image.fromarray(GRACE), "WEBP")[:2000], 400, "decode"),
    "corrupt png": (lambda: _corrupt(photos.encode_png(GRACE)), 400, "cannot decode"),
    "random bytes": (lambda: np.random.default_rng(1).bytes(5000), 415, "not a supported"),
    "svg": (lambda: b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415, "not a supported"),
    "decompression bomb": (lambda: _png_header_only(100_000, 100_000), 413, "pixels"),
    # PNG forbids a zero size, so Pillow does not recognise the file at all.
    "0x0 image": (lambda: _png_header_only(0, 0), 415, "not a supported image"),
    "animated gif": (_animated_gif, 400, "animated"),
}
GOOD_IMAGE_CASES: dict[str, tuple[Callable[[], bytes], int]] = {
    "polyglot jpeg+html": (_polyglot, 1),
    "1xN image": (lambda: _save(Image.new("RGB", (1, 300)), "PNG"), 0),
    "cmyk jpeg": (lambda: _save(Image.fromarray(GRACE).convert("CMYK"), "JPEG"), 1),
    "16-bit png": (
        lambda: _save(Image.fromarray((GRACE.mean(axis=2) * 256).astype(np.uint16)), "PNG"),
        1,
    ),
    "palette gif": (lambda: _save(Image.fromarray(GRACE).convert("P"), "GIF"), 1),
    "rgba png": (lambda: _save(Image.fromarray(GRACE).convert("RGBA"), "PNG"), 1),
}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _post(url: str, body: bytes, content_type: str = "image/jpeg") -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=60)


def _assert_json_error(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, (status, response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"} and words in body["error"], body


def _assert_still_serving(url: str) -> None:
    response = _post(f"{url}/infer", photos.grace_hopper_jpeg())
    assert response.status_code == 200 and len(response.json()["detections"]) == 1


@pytest.fixture(scope="module")
def baseline_rss(mtcnn_server) -> int:
    _assert_still_serving(mtcnn_server.url)  # warm: allocator pools in place
    return _rss_kib(mtcnn_server.process.pid)


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_hostile_image(mtcnn_server, baseline_rss, case: str) -> None:
    make, status, words = IMAGE_CASES[case]
    _assert_json_error(_post(f"{mtcnn_server.url}/infer", make()), status, words)
    files = {"image_file": ("x.jpg", make(), "image/jpeg")}
    response = requests.post(f"{mtcnn_server.url}/infer", files=files, timeout=60)
    _assert_json_error(response, status, words)


@pytest.mark.parametrize("case", GOOD_IMAGE_CASES)
def test_odd_but_valid_image(mtcnn_server, baseline_rss, case: str) -> None:
    make, faces = GOOD_IMAGE_CASES[case]
    response = _post(f"{mtcnn_server.url}/infer", make())
    assert response.status_code == 200, response.text
    assert len(response.json()["detections"]) == faces


@pytest.mark.parametrize(
    "fields, status, words",
    [
        ({"wrong_name": ("x.jpg", b"...", "image/jpeg")}, 400, "image_file"),
        ({"image_file": ("x.jpg", b"", "image/jpeg")}, 400, "empty image"),
        ({"image_file": (None, "not a file")}, 415, "not a supported image"),
    ],
)
def test_wrong_multipart_fields(mtcnn_server, baseline_rss, fields, status, words) -> None:
    response = requests.post(f"{mtcnn_server.url}/infer", files=fields, timeout=60)
    _assert_json_error(response, status, words)


def test_body_over_the_cap_sent_slowly_is_cut_off(mtcnn_server, baseline_rss) -> None:
    """A slow upload that announces more than the cap gets 413 without being read whole."""
    host, port = mtcnn_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        size = 100 << 20
        sock.sendall(
            f"POST /infer HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {size}\r\n\r\n".encode()
        )
        sent = 0
        try:
            for _ in range(400):  # bounded: at most 400 × 64 KiB, slowly
                sock.sendall(b"\xff" * 65536)
                sent += 65536
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(30)
        reply = sock.recv(65536).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
    assert '"error"' in reply
    assert sent < size


V2 = "/v2/models/mtcnn/infer"


def _v2_body(inputs: list[dict]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


def _tensor(name: str, datatype: str, shape: list[int], data: list | None = None) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data or []}


def _binary(head: dict, blob: bytes, status: int, words: str) -> tuple:
    header = json.dumps(head).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + blob, headers, status, words


def _mtcnn_inputs(min_size: float = 20.0, factor: float = 0.709) -> list[dict]:
    return [
        _tensor("input", "FP32", [2, 2, 3], [0.0] * 12),
        _tensor("min_size", "FP32", [], [min_size]),
        _tensor("thresholds", "FP32", [3], [0.6, 0.7, 0.8]),
        _tensor("factor", "FP32", [], [factor]),
    ]


V2_CASES = {
    "lying binary_data_size (too big)": _binary(
        {
            "inputs": [
                {
                    "name": "factor",
                    "datatype": "FP32",
                    "shape": [],
                    "parameters": {"binary_data_size": 4_000_000},
                }
            ]
        },
        b"\0\0\0\0",
        400,
        "past the end",
    ),
    "lying binary_data_size (too small)": _binary(
        {
            "inputs": [
                {
                    "name": "factor",
                    "datatype": "FP32",
                    "shape": [2],
                    "parameters": {"binary_data_size": 4},
                }
            ]
        },
        b"\0\0\0\0",
        400,
        "does not match shape",
    ),
    "header length past the body": (
        b"{}",
        {"Inference-Header-Content-Length": "999999"},
        400,
        "body has",
    ),
    "negative shape": (_v2_body([_tensor("input", "FP32", [-1, 5, 3])]), {}, 400, "negative"),
    "enormous shape": (
        _v2_body([_tensor("input", "FP32", [2**31, 2**31, 3])]),
        {},
        400,
        "more than",
    ),
    "NaN": (_v2_body(_mtcnn_inputs(factor=float("nan"))), {}, 400, "NaN"),
    "Inf": (_v2_body(_mtcnn_inputs(min_size=float("inf"))), {}, 400, "NaN or Inf"),
    "factor out of range": (_v2_body(_mtcnn_inputs(factor=1.0)), {}, 400, "within"),
    "smallest face out of range": (_v2_body(_mtcnn_inputs(min_size=0.5)), {}, 400, "within"),
    "unknown dtype": (_v2_body([_tensor("factor", "FP8", [])]), {}, 400, "not supported"),
    "BYTES": (_v2_body([_tensor("factor", "BYTES", [1], ["x"])]), {}, 400, "not supported"),
    "deeply nested JSON": (
        b'{"inputs": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        {},
        400,
        "nested too deeply",
    ),
    "deeply nested data": (
        b'{"inputs": [{"name": "factor", "datatype": "FP32", "shape": [], "data": '
        + b"[" * 900
        + b"1"
        + b"]" * 900
        + b"}]}",
        {},
        400,
        "",
    ),
    "not an object": (b"[1, 2, 3]", {}, 400, "must be an object"),
}


@pytest.mark.parametrize("case", V2_CASES)
def test_hostile_v2_request(mtcnn_server, baseline_rss, case: str) -> None:
    body, headers, status, words = V2_CASES[case]
    response = requests.post(f"{mtcnn_server.url}{V2}", data=body, headers=headers, timeout=60)
    _assert_json_error(response, status, words)


def test_after_the_corpus_the_server_serves_and_memory_is_bounded(
    mtcnn_server, baseline_rss
) -> None:
    _assert_still_serving(mtcnn_server.url)
    after = _rss_kib(mtcnn_server.process.pid)
    grown_mib = (after - baseline_rss) / 1024
    cases = len(IMAGE_CASES) + len(GOOD_IMAGE_CASES) + len(V2_CASES) + 4
    print(f"hostile inputs: {cases} cases, RSS {baseline_rss} → {after} KiB")
    # A bound, not a benchmark: no hostile input may leave a large allocation behind.
    assert grown_mib < 300, f"resident memory grew by {grown_mib:.0f} MiB"
    assert mtcnn_server.process.poll() is None
