"""The same photos for every path: JPEG bytes for /infer, the task's tensors for V2 (REST
and gRPC), and for V2 the check of each answer against the raw graph's (answers.py).

Four photos that installed packages ship (see tests/photos.py): two faces (scikit-image's
astronaut, matplotlib's Grace Hopper) and two without (coffee, a cat), 300–600 px a side.
Requests cycle through them, so every path sees the same mix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

import numpy as np
import tritonclient.http as triton_http

from modelzoo_server.imaging import decode_image, to_array
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.signature import NUMPY_TO_V2
from modelzoo_server.tasks import TASKS
from tests import photos
from tests.bench.answers import Answers
from tests.bench.grpc_load import GrpcRequest
from tests.bench.loadgen import HttpRequest

PHOTO_NAMES = ("astronaut", "grace_hopper", "coffee", "chelsea")


@cache
def jpegs() -> tuple[bytes, ...]:
    out = []
    for name in PHOTO_NAMES:
        if name == "grace_hopper":
            out.append(photos.grace_hopper_jpeg())  # the file as shipped
        else:
            out.append(photos.encode_jpeg(photos.PHOTOS[name](), quality=90))
    return tuple(out)


@dataclass(frozen=True)
class Workload:
    """One model's requests: the same photos as JPEG bytes and as the graph's tensors."""

    entry: ModelEntry
    jpegs: tuple[bytes, ...]
    feeds: tuple[dict[str, np.ndarray], ...]  # what the task's preprocess makes of each

    @property
    def infer_requests(self) -> list[HttpRequest]:
        """/infer with the raw image as the body (the README's second form)."""
        return [HttpRequest("/infer", data, {"Content-Type": "image/jpeg"}) for data in self.jpegs]

    @property
    def order(self) -> list[str]:
        """The input names, in the signature's order (V2 sends them so)."""
        return [spec.name for spec in self.entry.signature.inputs]

    def v2_requests(self, model_name: str, answers: Answers | None = None) -> list[HttpRequest]:
        """V2 with the binary tensor data extension, binary outputs (tritonclient's way);
        with `answers`, each answer is decoded and checked."""
        path = f"/v2/models/{model_name}/infer"
        return [
            v2_request(path, feeds, self.order, None if answers is None else answers.checker(i))
            for i, feeds in enumerate(self.feeds)
        ]

    def grpc_requests(self, answers: Answers) -> list[GrpcRequest]:
        """The same tensors for gRPC's ModelInfer, each answer checked."""
        return [
            GrpcRequest(tuple((n, _wire(feeds[n])) for n in self.order), answers.checker(i))
            for i, feeds in enumerate(self.feeds)
        ]


def _wire(array: np.ndarray) -> np.ndarray:
    """C order, little-endian: the bytes V2 carries (keeps 0-d scalars 0-d)."""
    array = np.require(array, requirements="C")
    return array.astype(array.dtype.newbyteorder("<"), copy=False)


def v2_outputs(body: bytes, headers: Mapping[str, str]) -> dict[str, np.ndarray]:
    """A REST V2 answer's outputs, decoded by tritonclient.http as a user's client does."""
    length = headers.get("Inference-Header-Content-Length")
    result = triton_http.InferResult.from_response_body(
        body, header_length=int(length) if length is not None else None
    )
    return {o["name"]: result.as_numpy(o["name"]) for o in result.get_response()["outputs"]}


def v2_request(
    path: str,
    feeds: dict[str, np.ndarray],
    order: list[str],
    check: Callable[[Mapping[str, np.ndarray]], None] | None = None,
) -> HttpRequest:
    inputs, blobs = [], []
    for name in order:
        array = _wire(feeds[name])
        blob = array.tobytes()
        inputs.append(
            {
                "name": name,
                "datatype": NUMPY_TO_V2[array.dtype],
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(blob)},
            }
        )
        blobs.append(blob)
    header = json.dumps(
        {"inputs": inputs, "parameters": {"binary_data_output": True}}, separators=(",", ":")
    ).encode()
    return HttpRequest(
        path,
        b"".join([header, *blobs]),
        {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
        None if check is None else lambda body, headers: check(v2_outputs(body, headers)),
    )


def workload(entry: ModelEntry) -> Workload:
    task = TASKS[entry.task](entry)
    options = task.options({})
    data = jpegs()
    feeds = tuple(task.preprocess(to_array(decode_image(d)), options) for d in data)
    return Workload(entry, data, feeds)
