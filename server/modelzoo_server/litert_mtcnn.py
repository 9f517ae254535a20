"""MTCNN on LiteRT: P-, R- and O-Net as three signatures of one checked flatbuffer.

The whole-image graph does not convert to builtin ops (its pyramid runs a float64 `Log`
and `ResizeArea`, its stages `CropAndResize`), so the zoo build converts the three
networks alone (modelzoo_models.recipes.mtcnn) and the pyramid, NMS and crops run here in
numpy (modelzoo_server.mtcnn_pipeline), mirroring the graph. `LiteMtcnn.run` has the
graph's contract: the same feeds and outputs by public name.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from modelzoo_models.contract import RefusedGraph
from modelzoo_server.litert import rejected
from modelzoo_server.mtcnn_pipeline import detect
from modelzoo_server.signature import FeedLimits, Signature, validate_feeds

# Each network's signature in the flatbuffer: input name and shape (-1 free), outputs.
NETS: dict[str, tuple[str, tuple[int, ...], dict[str, tuple[int, ...]]]] = {
    "pnet": (
        "image",
        (1, -1, -1, 3),
        {"regression": (1, -1, -1, 4), "probability": (1, -1, -1, 2)},
    ),
    "rnet": ("crops", (-1, 24, 24, 3), {"regression": (-1, 4), "probability": (-1, 2)}),
    "onet": (
        "crops",
        (-1, 48, 48, 3),
        {"regression": (-1, 4), "landmarks": (-1, 10), "probability": (-1, 2)},
    ),
}
FEEDS = ("input", "min_size", "thresholds", "factor")
RESULTS = ("box", "prob", "landmarks")


def _check_tensors(net: str, side: str, details: Mapping[str, Any], want: Mapping) -> None:
    if set(details) != set(want):
        raise RefusedGraph(
            f"tflite signature {net!r}: {side}s {sorted(details)}, expected {sorted(want)}"
        )
    for name, shape in want.items():
        got = tuple(int(d) for d in details[name]["shape_signature"])
        if np.dtype(details[name]["dtype"]) != np.float32 or got != shape:
            raise RefusedGraph(
                f"tflite signature {net!r} {side} {name!r}: "
                f"{np.dtype(details[name]['dtype'])} {list(got)}, expected float32 {list(shape)}"
            )


def check_nets(interpreter: Interpreter) -> None:
    """The flatbuffer has exactly the three networks, with the tensors the pipeline feeds."""
    found = interpreter.get_signature_list()
    if set(found) != set(NETS):
        raise RefusedGraph(f"tflite signatures {sorted(found)}, expected {sorted(NETS)}")
    for net, (input_name, input_shape, outputs) in NETS.items():
        runner = interpreter.get_signature_runner(net)
        _check_tensors(net, "input", runner.get_input_details(), {input_name: input_shape})
        _check_tensors(net, "output", runner.get_output_details(), outputs)


class LiteNets:
    """modelzoo_server.mtcnn_pipeline.Nets over LiteRT interpreters of one flatbuffer.

    Every pyramid level has its own size, and an interpreter resized to a new shape
    re-plans its buffers (measured: 41 of 226 ms for a 1024×768 photo). PNet therefore
    gives a small level shape an interpreter of its own the first time it comes, while
    their input pixels add up to PNET_CACHED_PIXELS; later shapes, and levels of
    PNET_SHARED_FROM pixels or more, take turns on one shared interpreter, which
    re-plans. Nothing is evicted: with more shapes than fit, evicting the least recently
    used made every level of a cycle of four photos build a new interpreter (served at
    half TensorFlow's speed), and large levels hold the large buffers (about 110 bytes a
    pixel; an interpreter for every level of 2000×1500 photos held 990 MiB)."""

    PNET_CACHED_PIXELS = 400_000
    PNET_SHARED_FROM = 100_000

    def __init__(self, data: bytes, num_threads: int) -> None:
        self._data = data
        self._threads = num_threads
        interpreter = self._interpreter()
        check_nets(interpreter)
        self._rnet = interpreter.get_signature_runner("rnet")
        self._onet = interpreter.get_signature_runner("onet")
        self._shared_pnet = interpreter.get_signature_runner("pnet")
        self._pnets: dict[tuple[int, ...], Any] = {}
        self._cached_pixels = 0

    def _interpreter(self) -> Interpreter:
        return Interpreter(model_content=self._data, num_threads=self._threads)

    def _pnet_for(self, shape: tuple[int, ...]) -> Any:
        runner = self._pnets.get(shape)
        if runner is not None:
            return runner
        pixels = shape[1] * shape[2]
        if (
            pixels >= self.PNET_SHARED_FROM
            or self._cached_pixels + pixels > self.PNET_CACHED_PIXELS
        ):
            return self._shared_pnet
        runner = self._pnets[shape] = self._interpreter().get_signature_runner("pnet")
        self._cached_pixels += pixels
        return runner

    def pnet(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._pnet_for(image.shape)(image=image)
        return out["regression"], out["probability"]

    def rnet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._rnet(crops=crops)
        return out["regression"], out["probability"]

    def onet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self._onet(crops=crops)
        return out["regression"], out["landmarks"], out["probability"]


class LiteMtcnn:
    """The MTCNN detector on LiteNets' interpreters: feeds and outputs as the zoo graph's."""

    def __init__(
        self, data: bytes, signature: Signature, feed_limits: FeedLimits, num_threads: int
    ) -> None:
        names = (tuple(s.name for s in signature.inputs), tuple(s.name for s in signature.outputs))
        if names != (FEEDS, RESULTS):
            raise RefusedGraph(
                f"the MTCNN pipeline takes {list(FEEDS)} and gives {list(RESULTS)}; the "
                f"signature has {list(names[0])} and {list(names[1])}"
            )
        self.signature = signature
        self.feed_limits = feed_limits
        self._nets = LiteNets(data, num_threads)
        self._tensors = [s.tensor for s in signature.inputs]
        # The runners hold their interpreters' tensors: calls take turns.
        self._lock = threading.Lock()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate feeds (by public name) and detect; returns outputs by public name."""
        checked = validate_feeds(self.signature, feeds, self.feed_limits)
        image, min_size, thresholds, factor = (checked[t] for t in self._tensors)
        with self._lock:
            try:
                return detect(self._nets, image, float(min_size), thresholds, float(factor))
            except (RuntimeError, ValueError) as exc:
                raise rejected(exc) from exc
