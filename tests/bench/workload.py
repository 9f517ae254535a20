"""The same photos for every path: JPEG bytes for /infer, the task's tensors for V2.

Four photos that installed packages ship (see tests/photos.py): two faces (scikit-image's
astronaut, matplotlib's Grace Hopper) and two without (coffee, a cat), 300–600 px a side.
Requests cycle through them, so every path sees the same mix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache

import numpy as np

from modelzoo_server.imaging import decode_image, to_array
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.signature import NUMPY_TO_V2
from modelzoo_server.tasks import TASKS
from tests import photos
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

    def v2_requests(self, model_name: str) -> list[HttpRequest]:
        """V2 with the binary tensor data extension, binary outputs (tritonclient's way)."""
        order = [spec.name for spec in self.entry.signature.inputs]
        return [v2_request(f"/v2/models/{model_name}/infer", feeds, order) for feeds in self.feeds]


def v2_request(path: str, feeds: dict[str, np.ndarray], order: list[str]) -> HttpRequest:
    inputs, blobs = [], []
    for name in order:
        array = np.require(feeds[name], requirements="C")  # keeps 0-d scalars 0-d
        blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
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
    )


def workload(entry: ModelEntry) -> Workload:
    task = TASKS[entry.task](entry)
    options = task.options({})
    data = jpegs()
    feeds = tuple(task.preprocess(to_array(decode_image(d)), options) for d in data)
    return Workload(entry, data, feeds)
