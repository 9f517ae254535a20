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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from modelzoo_models.contract import RefusedGraph
from modelzoo_server.errors import InvalidInput
from modelzoo_server.runtime import LoadLimits, read_model_file
from modelzoo_server.signature import FeedLimits, Signature, TensorSpec, validate_feeds

MAX_FILE_BYTES = LoadLimits.max_file_bytes  # the same cap as for a graph
T = TypeVar("T")
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


def rejected(exc: Exception) -> InvalidInput:
    """A kernel's refusal of a feed the signature allowed, as the client's error."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InvalidInput(f"the model rejected the input: {reason}")


class Pool(Generic[T]):
    """A pool of `size` members (an interpreter, or MTCNN's pipeline of them) made with
    `num_threads` threads each and, with `lone_threads` above `num_threads`, one more made
    with `lone_threads` for a call that comes alone.

    A member holds one set of tensors, so a call takes a free one and holds it to the end;
    `invoke` releases the GIL, so N executor threads run N calls at once. Few threads per
    member and many members give the most calls per second, many threads the fastest
    single call: a call that finds nothing else in flight or waiting takes the lone
    member, and while it runs, the others wait for it rather than oversubscribe the CPUs.
    """

    def __init__(
        self, make: Callable[[int], T], num_threads: int, size: int = 1, lone_threads: int = 0
    ) -> None:
        if size < 1:
            raise ValueError("a pool needs at least one member")
        self.pooled = [make(num_threads) for _ in range(size)]
        self.lone = make(lone_threads) if lone_threads > num_threads else None
        self.members = [*self.pooled, *([self.lone] if self.lone is not None else [])]
        self.waiting = 0
        self._turns = threading.Condition()
        self._free = list(self.pooled)  # a stack: at low load, the same warm one
        self._lone_busy = False

    def _take(self) -> T:
        with self._turns:
            alone = not self.waiting and len(self._free) == len(self.pooled)
            if self.lone is not None and alone and not self._lone_busy:
                self._lone_busy = True
                return self.lone
            self.waiting += 1
            try:
                while self._lone_busy or not self._free:
                    self._turns.wait()
            finally:
                self.waiting -= 1
            return self._free.pop()

    def _give(self, member: T) -> None:
        with self._turns:
            if member is self.lone:
                self._lone_busy = False
            else:
                self._free.append(member)
            self._turns.notify_all()

    @contextmanager
    def take(self) -> Iterator[T]:
        """A free member for the block (waiting for one if need be), given back after it."""
        member = self._take()
        try:
            yield member
        finally:
            self._give(member)


class _Interpreter:
    """One LiteRT interpreter and the input shapes it is planned for."""

    def __init__(self, data: bytes, signature: Signature, num_threads: int) -> None:
        self.interpreter = Interpreter(model_content=data, num_threads=num_threads)
        self.inputs = _match(signature.inputs, self.interpreter.get_input_details(), "input")
        self.outputs = _match(signature.outputs, self.interpreter.get_output_details(), "output")
        self.shapes: tuple[tuple[int, ...], ...] | None = None

    def fit(self, shapes: tuple[tuple[int, ...], ...]) -> None:
        """Resize the inputs when this call's shapes differ from this interpreter's last
        call's; XNNPACK plans its buffers once per shape, so a steady stream of one shape
        pays nothing."""
        if shapes == self.shapes:
            return
        for index, shape in zip(self.inputs, shapes, strict=True):
            self.interpreter.resize_tensor_input(index, shape, strict=True)
        self.interpreter.allocate_tensors()
        self.shapes = shapes

    def run(self, values: list[np.ndarray]) -> list[np.ndarray]:
        self.fit(tuple(v.shape for v in values))
        for index, value in zip(self.inputs, values, strict=True):
            self.interpreter.set_tensor(index, value)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(index) for index in self.outputs]


class LiteModel:
    """LiteRT interpreters over one checked flatbuffer, each resized to each feed's shape,
    in a Pool: `interpreters` with `num_threads` threads each and, with `lone_threads`
    above `num_threads`, one more with `lone_threads` for a call that comes alone. The
    interpreters share the model's bytes; each has its own XNNPACK plan and packed weights.
    """

    def __init__(
        self,
        data: bytes,
        signature: Signature,
        feed_limits: FeedLimits,
        num_threads: int,
        interpreters: int = 1,
        lone_threads: int = 0,
    ) -> None:
        self.signature = signature
        self.feed_limits = feed_limits
        self._pool = Pool(
            lambda threads: _Interpreter(data, signature, threads),
            num_threads,
            interpreters,
            lone_threads,
        )
        self.interpreters = self._pool.pooled
        self.lone = self._pool.lone
        self._input_tensors = [s.tensor for s in signature.inputs]
        self._output_names = [s.name for s in signature.outputs]

    def _values(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        checked = validate_feeds(self.signature, feeds, self.feed_limits)
        return [checked[t] for t in self._input_tensors]

    def _call(self, interpreter: _Interpreter, values: list[np.ndarray]) -> dict[str, np.ndarray]:
        try:
            results = interpreter.run(values)
        except (RuntimeError, ValueError) as exc:
            # The signature allowed the feed but a kernel's own checks did not; the
            # next call plans its buffers afresh.
            interpreter.shapes = None
            raise rejected(exc) from exc
        return dict(zip(self._output_names, results, strict=True))

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate feeds (by public name) and run the model; returns outputs by public name."""
        values = self._values(feeds)
        with self._pool.take() as interpreter:
            return self._call(interpreter, values)

    def warm_up(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """`run` on every interpreter (the last one's outputs), so that each has planned
        its buffers before the first request reaches it; before serving, nothing else runs."""
        values = self._values(feeds)
        return [self._call(interpreter, values) for interpreter in self._pool.members][-1]


def load_tflite(
    path: Path | str,
    signature: Signature,
    sha256: str | None = None,
    feed_limits: FeedLimits = FeedLimits(),
    num_threads: int = 1,
    max_bytes: int = MAX_FILE_BYTES,
    interpreters: int = 1,
    lone_threads: int = 0,
) -> LiteModel:
    data = read_tflite(Path(path), sha256, max_bytes)
    return LiteModel(data, signature, feed_limits, num_threads, interpreters, lone_threads)
