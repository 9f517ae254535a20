"""Loads one frozen graph, safely, and runs it as a compiled function.

load → check (size, sha256, op allowlist) → import once → prune to the
signature's tensors → warm up. `GraphModel.run` is blocking TensorFlow work:
callers on the event loop hand it to an executor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelzoo_models.contract import RefusedGraph
from modelzoo_models.graph_policy import GraphLimits, check_graph
from modelzoo_server.errors import InvalidInput
from modelzoo_server.signature import FeedLimits, Signature, validate_feeds


@dataclass(frozen=True)
class LoadLimits:
    max_file_bytes: int = 1 << 30
    graph: GraphLimits = GraphLimits()


def configure_threads(intra_op: int, inter_op: int) -> None:
    """Must run before TensorFlow executes its first op; later calls are ignored by TF."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        pass  # TF already initialised in this process (tests); the first setting stays.


def read_model_file(path: Path, sha256: str | None, max_bytes: int, what: str) -> bytes:
    """A model file's bytes once its size and sha256 (when pinned) are checked; RefusedGraph
    otherwise. `what` names the kind of file in the reason ("graph", "tflite")."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RefusedGraph(f"cannot read {what} {path}: {exc.strerror}") from exc
    if size > max_bytes:
        raise RefusedGraph(f"{what} file is {size} bytes, over the cap of {max_bytes}")
    # One read: the bytes whose sha256 is checked are the bytes that get parsed.
    data = path.read_bytes()
    if sha256:
        actual = hashlib.sha256(data).hexdigest()
        if actual != sha256.lower():
            raise RefusedGraph(f"sha256 mismatch: expected {sha256.lower()}, file has {actual}")
    return data


def read_graph_def(path: Path, sha256: str | None, limits: LoadLimits = LoadLimits()):
    """Read and check a GraphDef; raise RefusedGraph with one readable reason."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.framework import graph_pb2

    data = read_model_file(path, sha256, limits.max_file_bytes, "graph")
    graph_def = graph_pb2.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except DecodeError as exc:
        raise RefusedGraph(f"not a valid GraphDef protobuf ({exc})") from exc
    if not graph_def.node:
        raise RefusedGraph("graph has no nodes (empty or not a GraphDef)")
    check_graph(graph_def, limits.graph)
    for node in graph_def.node:
        node.device = ""  # placement is the server's decision, not the file's
    return graph_def


class GraphModel:
    """One imported graph, pruned to the signature's inputs and outputs."""

    def __init__(self, graph_def, signature: Signature, feed_limits: FeedLimits) -> None:
        import tensorflow as tf

        self.signature = signature
        self.feed_limits = feed_limits
        wrapped = tf.compat.v1.wrap_function(
            lambda: tf.compat.v1.import_graph_def(graph_def, name=""), []
        )
        graph = wrapped.graph
        try:
            feeds = [graph.get_tensor_by_name(s.tensor) for s in signature.inputs]
            fetches = [graph.get_tensor_by_name(s.tensor) for s in signature.outputs]
        except (KeyError, ValueError) as exc:
            raise RefusedGraph(f"signature names a tensor the graph lacks: {exc}") from exc
        # With a structured input signature each call binds its tensors at once; without
        # one, TF first tries a structured bind, fails, and formats every input into an
        # error it then discards before the flat call: about 1 ms per call.
        input_signature = ([tf.TensorSpec.from_tensor(t) for t in feeds], {})
        self._fn = wrapped.prune(feeds=feeds, fetches=fetches, input_signature=input_signature)
        self._to_tensor = tf.convert_to_tensor
        self._graph_errors = (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError)
        self._input_tensors = [s.tensor for s in signature.inputs]
        self._output_names = [s.name for s in signature.outputs]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate feeds (by public name) and run the graph; returns outputs by public name."""
        checked = validate_feeds(self.signature, feeds, self.feed_limits)
        try:
            results = self._fn(*(self._to_tensor(checked[t]) for t in self._input_tensors))
        except self._graph_errors as exc:
            # The signature allowed the feed but the graph's own checks did not.
            raise InvalidInput(
                f"the model rejected the input: {exc.message.splitlines()[0]}"
            ) from exc
        return {name: r.numpy() for name, r in zip(self._output_names, results, strict=True)}


def load_graph(
    path: Path | str,
    signature: Signature | Mapping[str, Any],
    sha256: str | None = None,
    limits: LoadLimits = LoadLimits(),
    feed_limits: FeedLimits = FeedLimits(),
) -> GraphModel:
    if not isinstance(signature, Signature):
        signature = Signature.from_json(signature)
    graph_def = read_graph_def(Path(path), sha256, limits)
    return GraphModel(graph_def, signature, feed_limits)
