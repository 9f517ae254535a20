"""Open Inference Protocol (KServe V2) REST bodies ⇄ numpy, with the binary data extension.

Pure functions: bytes in, arrays out, and back. A request with the header
`Inference-Header-Content-Length: N` carries N bytes of JSON followed by the
raw bytes of every input whose `parameters.binary_data_size` is set, in order.
The checks of one tensor (name, datatype, shape, size, values), of the model name and of
the requested outputs are the protocol's, so the gRPC codec (v2_grpc_codec) uses them too.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelzoo_server.errors import InvalidInput, ModelNotFound
from modelzoo_server.signature import NUMPY_TO_V2, V2_DTYPES

HEADER_LENGTH = "Inference-Header-Content-Length"
# A server holds one model, always answered as this version (V2's `model_version`).
MODEL_VERSION = "1"
# The server's own version, as installed (V2 server metadata).
SERVER_VERSION = importlib.metadata.version("modelzoo")
PLATFORM = "tensorflow_graphdef"
MAX_ELEMENTS = 1 << 28


def check_model(served: str, name: str, version: str | None) -> None:
    """Raise ModelNotFound unless `name` (and `version`, when given) is the served model."""
    if name != served or (version is not None and version != MODEL_VERSION):
        raise ModelNotFound(
            f"unknown model {name!r}"
            + (f" version {version!r}" if version else "")
            + f"; this server serves {served!r} version {MODEL_VERSION}"
        )


@dataclass(frozen=True)
class TensorHeader:
    """An input's name, datatype and shape, checked; its data comes in one of two forms."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return V2_DTYPES[self.datatype]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def from_bytes(self, data: bytes | memoryview, what: str) -> np.ndarray:
        """Little-endian, row-major elements; `what` names the bytes in the error."""
        if len(data) != self.nbytes:
            raise InvalidInput(
                f"input {self.name!r}: {what} of {len(data)} bytes does not match shape "
                f"{list(self.shape)} of {self.datatype} ({self.nbytes} bytes)"
            )
        array = np.frombuffer(data, dtype=self.dtype.newbyteorder("<"))
        return array.astype(self.dtype, copy=False).reshape(self.shape)

    def from_values(self, flat: list[Any]) -> np.ndarray:
        count = math.prod(self.shape)
        if len(flat) != count:
            raise InvalidInput(
                f"input {self.name!r}: {len(flat)} values do not fill shape "
                f"{list(self.shape)} ({count})"
            )
        try:
            array = np.asarray(flat, dtype=self.dtype)
        except (OverflowError, ValueError) as exc:
            raise InvalidInput(
                f"input {self.name!r}: values do not fit {self.datatype}: {exc}"
            ) from exc
        return array.reshape(self.shape)


def little_endian_bytes(array: np.ndarray) -> bytes:
    """The protocol's raw layout of a tensor: row-major, little-endian, no padding."""
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def tensor_header(name: Any, datatype: Any, shape: Any) -> TensorHeader:
    if not isinstance(name, str):
        raise InvalidInput("every input needs a 'name' string")
    if datatype not in V2_DTYPES:
        raise InvalidInput(
            f"input {name!r}: datatype {datatype!r} is not supported "
            f"(use one of {', '.join(V2_DTYPES)})"
        )
    return TensorHeader(name, datatype, _shape(shape, name))


def select_outputs(
    results: Mapping[str, np.ndarray], wanted: tuple[str, ...] | None
) -> dict[str, np.ndarray]:
    """The requested outputs in the order asked (None: all of them), C-contiguous."""
    names = wanted if wanted is not None else tuple(results)
    unknown = [name for name in names if name not in results]
    if unknown:
        raise InvalidInput(
            f"unknown output(s) {', '.join(unknown)}; the model has {', '.join(results)}"
        )
    return {name: np.ascontiguousarray(results[name]) for name in names}


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: tuple[RequestedOutput, ...] | None  # None: all outputs
    binary_default: bool


def _json_header(
    body: bytes | bytearray, header_length: int | None
) -> tuple[dict[str, Any], memoryview]:
    if header_length is None:
        header_length = len(body)
    if not 0 <= header_length <= len(body):
        raise InvalidInput(f"{HEADER_LENGTH} is {header_length} but the body has {len(body)} bytes")
    try:
        header = json.loads(bytes(body[:header_length]))
    except RecursionError as exc:
        raise InvalidInput("request JSON is nested too deeply") from exc
    except ValueError as exc:
        raise InvalidInput(f"request is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise InvalidInput("request JSON must be an object")
    return header, memoryview(body)[header_length:]


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in raw
    ):
        raise InvalidInput(f"input {name!r}: shape must be a list of integers")
    if any(d < 0 for d in raw):
        raise InvalidInput(f"input {name!r}: shape {raw} has a negative dimension")
    if math.prod(raw) > MAX_ELEMENTS:
        raise InvalidInput(f"input {name!r}: shape {raw} has more than {MAX_ELEMENTS} elements")
    return tuple(raw)


def _flatten(data: Any, name: str) -> list[Any]:
    """Nested lists → flat list, iteratively (no recursion on attacker-chosen depth)."""
    flat: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, bool | int | float):
            flat.append(item)
        else:
            raise InvalidInput(f"input {name!r}: data holds a {type(item).__name__}, not numbers")
    return flat


def _decode_input(spec: Any, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(spec, dict):
        raise InvalidInput("each entry of 'inputs' must be an object")
    header = tensor_header(spec.get("name"), spec.get("datatype"), spec.get("shape"))
    name = header.name
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput(f"input {name!r}: parameters must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInput(f"input {name!r}: binary_data_size must be a non-negative integer")
        if offset + size > len(binary):
            raise InvalidInput(
                f"input {name!r}: binary_data_size {size} runs past the end of the body"
            )
        blob = binary[offset : offset + size]
        return name, header.from_bytes(blob, "binary_data_size"), offset + size
    if "data" not in spec:
        raise InvalidInput(f"input {name!r} has neither 'data' nor binary_data_size")
    return name, header.from_values(_flatten(spec["data"], name)), offset


def parse_infer_request(body: bytes | bytearray, header_length: int | None) -> InferRequest:
    header, binary = _json_header(body, header_length)
    inputs_raw = header.get("inputs")
    if not isinstance(inputs_raw, list) or not inputs_raw:
        raise InvalidInput("'inputs' must be a non-empty list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for spec in inputs_raw:
        name, array, offset = _decode_input(spec, binary, offset)
        if name in inputs:
            raise InvalidInput(f"input {name!r} is given twice")
        inputs[name] = array
    if offset != len(binary):
        raise InvalidInput(
            f"body has {len(binary) - offset} bytes of binary data that no input claims"
        )
    params = header.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("'parameters' must be an object")
    binary_default = bool(params.get("binary_data_output", False))
    outputs = None
    if header.get("outputs") is not None:
        if not isinstance(header["outputs"], list):
            raise InvalidInput("'outputs' must be a list")
        requested = []
        for out in header["outputs"]:
            if not isinstance(out, dict) or not isinstance(out.get("name"), str):
                raise InvalidInput("every requested output needs a 'name' string")
            out_params = out.get("parameters") or {}
            if not isinstance(out_params, dict):
                raise InvalidInput(f"output {out['name']!r}: parameters must be an object")
            requested.append(
                RequestedOutput(out["name"], bool(out_params.get("binary_data", binary_default)))
            )
        outputs = tuple(requested)
    request_id = header.get("id")
    return InferRequest(
        id=str(request_id) if request_id is not None else None,
        inputs=inputs,
        outputs=outputs,
        binary_default=binary_default,
    )


def encode_infer_response(
    model: str, request: InferRequest, results: Mapping[str, np.ndarray]
) -> tuple[bytes, dict[str, str]]:
    """The response body and extra headers; binary outputs follow the JSON header."""
    wanted = request.outputs or tuple(RequestedOutput(n, request.binary_default) for n in results)
    arrays = select_outputs(results, tuple(o.name for o in wanted))
    outputs_json = []
    blobs: list[bytes] = []
    for out in wanted:
        array = arrays[out.name]
        entry: dict[str, Any] = {
            "name": out.name,
            "datatype": NUMPY_TO_V2[array.dtype],
            "shape": list(array.shape),
        }
        if out.binary:
            blob = little_endian_bytes(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs_json.append(entry)
    header: dict[str, Any] = {
        "model_name": model,
        "model_version": MODEL_VERSION,
        "outputs": outputs_json,
    }
    if request.id is not None:
        header["id"] = request.id
    head = json.dumps(header, separators=(",", ":")).encode()
    if not blobs:
        return head, {"Content-Type": "application/json"}
    return b"".join([head, *blobs]), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(head)),
    }
