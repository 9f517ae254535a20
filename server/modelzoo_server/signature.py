"""A graph's public interface and the validation of feeds against it (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelzoo_models.contract import ModelRecord, TensorRecord
from modelzoo_server.errors import InvalidInput

# KServe V2 datatype names ⇄ numpy dtypes.
V2_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NUMPY_TO_V2: dict[np.dtype, str] = {v: k for k, v in V2_DTYPES.items()}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 is a free dimension
    tensor: str
    range: tuple[float, float] | None = None  # allowed values, inclusive

    @property
    def v2_datatype(self) -> str:
        return NUMPY_TO_V2[self.dtype]

    @classmethod
    def from_record(cls, record: TensorRecord) -> TensorSpec:
        return cls(
            name=record.name,
            dtype=np.dtype(record.dtype),
            shape=record.shape,
            tensor=record.tensor,
            range=record.range,
        )

    def as_v2_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.v2_datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_record(cls, record: ModelRecord) -> Signature:
        return cls(
            inputs=tuple(TensorSpec.from_record(t) for t in record.inputs),
            outputs=tuple(TensorSpec.from_record(t) for t in record.outputs),
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signature:
        """`{"inputs": [...], "outputs": [...]}`, checked by the contract (RecordError)."""
        return cls.from_record(ModelRecord.from_json({"signature": data}, name="signature"))

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InvalidInput(
            f"unknown input {name!r}; the model takes {', '.join(s.name for s in self.inputs)}"
        )


@dataclass(frozen=True)
class FeedLimits:
    max_dim: int = 16384
    max_bytes: int = 256 << 20


def validate_feeds(
    signature: Signature, feeds: Mapping[str, np.ndarray], limits: FeedLimits = FeedLimits()
) -> dict[str, np.ndarray]:
    """Check every feed against the signature; return them keyed by graph tensor name."""
    missing = [s.name for s in signature.inputs if s.name not in feeds]
    if missing:
        raise InvalidInput(f"missing input tensor(s): {', '.join(missing)}")
    total = 0
    checked: dict[str, np.ndarray] = {}
    for name, value in feeds.items():
        spec = signature.input(name)
        if value.dtype != spec.dtype:
            raise InvalidInput(
                f"input {name!r} has datatype {NUMPY_TO_V2.get(value.dtype, str(value.dtype))}, "
                f"the model expects {spec.v2_datatype}"
            )
        if value.ndim != len(spec.shape) or any(
            want not in (-1, got) for want, got in zip(spec.shape, value.shape, strict=True)
        ):
            raise InvalidInput(
                f"input {name!r} has shape {list(value.shape)}, the model expects "
                f"{list(spec.shape)} (-1 is any size)"
            )
        if any(d > limits.max_dim for d in value.shape):
            raise InvalidInput(f"input {name!r} has a dimension over {limits.max_dim}")
        total += value.nbytes
        if total > limits.max_bytes:
            raise InvalidInput(f"inputs are larger than {limits.max_bytes} bytes in total")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InvalidInput(f"input {name!r} contains NaN or Inf")
        if spec.range is not None and value.size:
            low, high = spec.range
            if value.min() < low or value.max() > high:
                raise InvalidInput(f"input {name!r} must lie within [{low:g}, {high:g}]")
        checked[spec.tensor] = value
    return checked
