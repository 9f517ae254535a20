"""MTCNN on LiteRT: P-, R- and O-Net as three signatures of one checked flatbuffer.

The whole-image graph does not convert to builtin ops (its pyramid runs a float64 `Log`
and `ResizeArea`, its stages `CropAndResize`), so the zoo build converts the three
networks alone (modelzoo_models.recipes.mtcnn) and the pyramid, NMS and crops run here in
numpy (modelzoo_server.mtcnn_pipeline), mirroring the graph. `LiteMtcnn.run` has the
graph's contract: the same feeds and outputs by public name. It serves a pool of
pipelines (`LiteNets`, each with its own interpreters) under litert.Pool's policy, as
LiteModel serves a pool of interpreters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from modelzoo_models.contract import RefusedGraph
from modelzoo_server.litert import Pool, rejected
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
    """modelzoo_server.mtcnn_pipeline.Nets over LiteRT interpreters of one flatbuffer: one
    pipeline, which runs one call at a time (its runners hold their interpreters' tensors).

    Every pyramid level has its own size, and an interpreter resized to a new shape
    re-plans its buffers (measured: 41 of 226 ms for a 1024×768 photo). PNet therefore
    gives a small level shape an interpreter of its own the first time it comes, while
    their input pixels add up to PNET_CACHED_PIXELS; later shapes, and levels of
    PNET_SHARED_FROM pixels or more, take turns on one shared interpreter, which
    re-plans. Nothing is evicted: with more shapes than fit, evicting the least recently
    used made every level of a cycle of four photos build a new interpreter (served at
    half TensorFlow's speed), and large levels hold the large buffers (about 110 bytes a
    pixel; an interpreter for every level of 2000×1500 photos held 990 MiB).

    The budget is each pipeline's. A third of it each, in a pool of three on 2 CPUs
    (`--pipelines 2`), saved 370 of the process's 870 MiB after the bench photos and 350 of
    1670 after 2000×1500 ones (one pipeline: 390 and 770; there most of it is each
    pipeline's shared PNet, sized by the largest level), but cached 13 of their levels
    instead of 27 and made a call 10-20% slower: about what the pool gains (14%)."""

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
    """The MTCNN detector on LiteRT: feeds and outputs as the zoo graph's.

    A litert.Pool of LiteNets, as LiteModel's of interpreters: `interpreters` pipelines
    with `num_threads` threads each and, with `lone_threads` above `num_threads`, one more
    with `lone_threads` for a call that comes alone; a call holds one pipeline from the
    pyramid to ONet. Measured in-process on 2 CPUs: two 1-thread pipelines ran 44.6
    images/s against one 2-thread pipeline's 39.2, and a lone call's p50 was 23.1 ms on 2
    threads against 31.8 ms on 1. Each pipeline holds its own PNet interpreters
    (LiteNets): after the bench photos the process held 870 MiB with three, 390 MiB with
    one, which is why the server runs one by default (settings.DEFAULT_PIPELINES)."""

    def __init__(
        self,
        data: bytes,
        signature: Signature,
        feed_limits: FeedLimits,
        num_threads: int,
        interpreters: int = 1,
        lone_threads: int = 0,
    ) -> None:
        names = (tuple(s.name for s in signature.inputs), tuple(s.name for s in signature.outputs))
        if names != (FEEDS, RESULTS):
            raise RefusedGraph(
                f"the MTCNN pipeline takes {list(FEEDS)} and gives {list(RESULTS)}; the "
                f"signature has {list(names[0])} and {list(names[1])}"
            )
        self.signature = signature
        self.feed_limits = feed_limits
        self._pool = Pool(
            lambda threads: LiteNets(data, threads), num_threads, interpreters, lone_threads
        )
        self._tensors = [s.tensor for s in signature.inputs]

    def _args(self, feeds: Mapping[str, np.ndarray]) -> tuple[np.ndarray, float, np.ndarray, float]:
        checked = validate_feeds(self.signature, feeds, self.feed_limits)
        image, min_size, thresholds, factor = (checked[t] for t in self._tensors)
        return image, float(min_size), thresholds, float(factor)

    @staticmethod
    def _detect(
        nets: LiteNets, args: tuple[np.ndarray, float, np.ndarray, float]
    ) -> dict[str, np.ndarray]:
        try:
            return detect(nets, *args)
        except (RuntimeError, ValueError) as exc:
            raise rejected(exc) from exc

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate feeds (by public name) and detect; returns outputs by public name."""
        args = self._args(feeds)
        with self._pool.take() as nets:
            return self._detect(nets, args)

    def warm_up(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`run` on every pipeline (the last one's outputs), so that each has planned its
        buffers before the first request reaches it; before serving, nothing else runs."""
        args = self._args(feeds)
        return [self._detect(nets, args) for nets in self._pool.members][-1]
