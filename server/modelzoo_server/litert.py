"""Runs a verified `.tflite` with LiteRT; nothing here imports TensorFlow.

load → check (size, sha256, a TFLite flatbuffer whose every operator is a builtin op)
→ only then create the interpreter → check it against the signature. `LiteModel.run`
has `GraphModel.run`'s contract (feeds by public name in, outputs by public name out)
and is blocking: callers on the event loop hand it to an executor.

Builtin ops only: a custom op runs whatever kernel the process registered under its
name, and Flex ops (`SELECT_TF_OPS`) are TensorFlow kernels, the very ops the graph
allowlist keeps out; neither may come in through the flatbuffer.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from modelzoo_models.contract import RefusedGraph
from modelzoo_server.errors import InvalidInput
from modelzoo_server.runtime import LoadLimits, read_model_file
from modelzoo_server.signature import FeedLimits, Signature, TensorSpec, validate_feeds

MAX_FILE_BYTES = LoadLimits.max_file_bytes  # the same cap as for a graph
_BUILTIN_NAMES: dict[int, str] = {
    code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}


def builtin_ops(data: bytes) -> list[str]:
    """The flatbuffer's operator codes by name; RefusedGraph for a custom or unknown op."""
    try:
        if not schema.Model.ModelBufferHasIdentifier(data, 0):
            raise RefusedGraph("not a TFLite flatbuffer (no TFL3 identifier)")
        model = schema.Model.GetRootAs(data, 0)
        codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
        # Old files keep the code in an int8 field (127 = look in the int32 one).
        found = [(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()), c.CustomCode()) for c in codes]
    except (IndexError, ValueError, TypeError, struct.error) as exc:  # a corrupt table
        raise RefusedGraph(f"not a valid TFLite flatbuffer ({exc})") from exc
    names = []
    for code, custom in found:
        if code == schema.BuiltinOperator.CUSTOM:
            kind = (
                "a Flex (TensorFlow) op" if (custom or b"").startswith(b"Flex") else "a custom op"
            )
            raise RefusedGraph(
                f"op {(custom or b'').decode(errors='replace')!r} is {kind}: only TFLite "
                "builtin ops are served"
            )
        if code not in _BUILTIN_NAMES:
            raise RefusedGraph(f"op code {code} is not a builtin op this LiteRT knows")
        names.append(_BUILTIN_NAMES[code])
    return names


def read_tflite(path: Path, sha256: str | None, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Read and check a flatbuffer; raise RefusedGraph with one readable reason."""
    data = read_model_file(path, sha256, max_bytes, "tflite")
    builtin_ops(data)
    return data


def _tensor_name(spec: TensorSpec) -> str:
    # The converter names a tensor after its graph node: "input:0" becomes "input".
    return spec.tensor.removesuffix(":0")


def _match(specs: tuple[TensorSpec, ...], details: list[dict[str, Any]], side: str) -> list[int]:
    """The interpreter's tensor index for each signature tensor, checked for dtype and shape."""
    by_name = {d["name"]: d for d in details}
    indices = []
    for spec in specs:
        detail = by_name.get(_tensor_name(spec))
        if detail is None:
            raise RefusedGraph(
                f"signature {side} {spec.name!r} ({spec.tensor}) is not an {side} of the "
                f"tflite model, which has {', '.join(sorted(by_name))}"
            )
        shape = tuple(int(d) for d in detail["shape_signature"])
        if np.dtype(detail["dtype"]) != spec.dtype or len(shape) != len(spec.shape):
            raise RefusedGraph(
                f"{side} {spec.name!r}: tflite has {np.dtype(detail['dtype'])} {list(shape)}, "
                f"the signature {spec.dtype} {list(spec.shape)}"
            )
        # A dimension the signature fixes must be fixed to the same size; a free one
        # must be free in the model too, or a feed the signature accepts would fail.
        if any(want != got for want, got in zip(spec.shape, shape, strict=True)):
            raise RefusedGraph(
                f"{side} {spec.name!r}: tflite shape {list(shape)} differs from the "
                f"signature's {list(spec.shape)} (-1 is free)"
            )
        indices.append(detail["index"])
    return indices


class LiteModel:
    """One LiteRT interpreter over a checked flatbuffer, resized to each feed's shape."""

    def __init__(
        self, data: bytes, signature: Signature, feed_limits: FeedLimits, num_threads: int
    ) -> None:
        self.signature = signature
        self.feed_limits = feed_limits
        self._interpreter = Interpreter(model_content=data, num_threads=num_threads)
        self._inputs = _match(signature.inputs, self._interpreter.get_input_details(), "input")
        self._outputs = _match(signature.outputs, self._interpreter.get_output_details(), "output")
        self._input_tensors = [s.tensor for s in signature.inputs]
        self._output_names = [s.name for s in signature.outputs]
        self._shapes: tuple[tuple[int, ...], ...] | None = None
        # One interpreter holds one set of tensors: calls from the executor's threads
        # take turns (it runs its own threads inside each call).
        self._lock = threading.Lock()

    def _fit(self, shapes: tuple[tuple[int, ...], ...]) -> None:
        """Resize the inputs when this call's shapes differ from the last call's; XNNPACK
        plans its buffers once per shape, so a steady stream of one shape pays nothing."""
        if shapes == self._shapes:
            return
        for index, shape in zip(self._inputs, shapes, strict=True):
            self._interpreter.resize_tensor_input(index, shape, strict=True)
        self._interpreter.allocate_tensors()
        self._shapes = shapes

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate feeds (by public name) and run the model; returns outputs by public name."""
        checked = validate_feeds(self.signature, feeds, self.feed_limits)
        values = [checked[t] for t in self._input_tensors]
        with self._lock:
            try:
                self._fit(tuple(v.shape for v in values))
                for index, value in zip(self._inputs, values, strict=True):
                    self._interpreter.set_tensor(index, value)
                self._interpreter.invoke()
            except (RuntimeError, ValueError) as exc:
                # The signature allowed the feed but a kernel's own checks did not; the
                # next call plans its buffers afresh.
                self._shapes = None
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
                raise InvalidInput(f"the model rejected the input: {reason}") from exc
            results = [self._interpreter.get_tensor(index) for index in self._outputs]
        return dict(zip(self._output_names, results, strict=True))


def load_tflite(
    path: Path | str,
    signature: Signature,
    sha256: str | None = None,
    feed_limits: FeedLimits = FeedLimits(),
    num_threads: int = 1,
    max_bytes: int = MAX_FILE_BYTES,
) -> LiteModel:
    data = read_tflite(Path(path), sha256, max_bytes)
    return LiteModel(data, signature, feed_limits, num_threads)
