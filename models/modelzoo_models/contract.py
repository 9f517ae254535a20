"""What the zoo, the server and the operator agree on, written once.

The zoo writes one `ModelRecord` per entry into `catalog.json`; the server reads it (or a
user's signature file, the same record without artifacts) to know what to serve; the
operator writes that signature file for models that do not come from the zoo. The image
carries all three packages, so each imports this module. It needs only the standard
library (no TensorFlow, aiohttp or kopf), so the operator stays light.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Where the image bakes the zoo (`modelzoo-models build --out MODEL_DIR`).
MODEL_DIR = "/opt/modelzoo/models"
CATALOG_FILE = "catalog.json"

# What a served model does with a request; a zoo entry names one, a user's graph picks one.
FACE_DETECTION = "face-detection"
OBJECT_DETECTION = "object-detection"
IMAGE_CLASSIFICATION = "image-classification"
TENSOR = "tensor"  # raw tensors in, raw tensors out (V2 only)
TASKS: tuple[str, ...] = (FACE_DETECTION, OBJECT_DETECTION, IMAGE_CLASSIFICATION, TENSOR)

# The dtypes a signature may name (numpy's names; the server maps them to V2's).
DTYPES = (
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "float32", "float64",
)  # fmt: skip
# How the decoded RGB image is turned into the graph's first input (see `Preprocessing`).
CHANNELS = ("RGB", "BGR", "GRAY")
RESIZES = ("bilinear", "bilinear-align-corners", "bilinear-legacy")
# The file formats a record's artifacts may have.
GRAPHDEF = "graphdef"
# A TFLite flatbuffer of builtin ops, converted from the graphdef and verified against it
# (modelzoo_models.prepare); LiteRT runs it without TensorFlow.
TFLITE = "tflite"
# What a server runs a model on (`modelzoo-server --runtime`, a ModelZoo's `runtime`):
# `auto` takes LiteRT where a verified .tflite exists, else TensorFlow.
AUTO, LITERT, TENSORFLOW = "auto", "litert", "tensorflow"
RUNTIMES: tuple[str, ...] = (AUTO, LITERT, TENSORFLOW)
ARTIFACT_FORMATS = (GRAPHDEF, TFLITE)
# A `.tflite` whose signatures are a model's parts, driven by the server's own code (the
# pyramid and NMS of MTCNN, modelzoo_server.mtcnn_pipeline), rather than the whole model.
MTCNN_NETS = "mtcnn-nets"
PIPELINES = (MTCNN_NETS,)


# What the prepare step decided for a user's graph, in one line, "<runtime>: <why>":
# `modelzoo-prepare --prepared` prints it and writes it as the `prepare-model` init
# container's termination message, where the operator reads it into the model's status.
def outcome_line(runtime: str, why: str) -> str:
    return f"{runtime}: {why}"


def parse_outcome(line: str) -> tuple[str, str] | None:
    """(runtime, why) of an outcome line; None for anything else (a refusal, a crash)."""
    runtime, sep, why = line.strip().partition(": ")
    return (runtime, why.strip()) if sep and runtime in (LITERT, TENSORFLOW) else None


class Unservable(Exception):
    """This model cannot be served; the message says which part and why.

    Every refusal to serve (a bad record, a refused graph, a task that cannot use the
    record) derives from it, so `modelzoo-server` turns each into one line and exit 2."""


class RecordError(Unservable, ValueError):
    """A catalog record or signature file that does not follow this contract."""


class RefusedGraph(Unservable):
    """A graph file that must not be loaded: the reason names the offending op or check."""


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise RecordError(message)


def _mapping(data: Any, what: str) -> Mapping[str, Any]:
    _require(isinstance(data, Mapping), f"{what} must be a mapping, got {type(data).__name__}")
    return data


def _number(value: Any, what: str) -> float:
    _require(
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
        f"{what} must be a finite number, got {value!r}",
    )
    return float(value)


@dataclass(frozen=True)
class TensorRecord:
    """One named input or output of a graph: `name` is the public (V2) name."""

    name: str
    dtype: str
    shape: tuple[int, ...]  # -1 marks a free dimension
    tensor: str = ""  # the graph's tensor name; defaults to `<name>:0`
    # The values a request may send, [low, high]: keeps raw V2 callers from asking a
    # graph for unbounded work (an MTCNN pyramid with factor 1 never ends).
    range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.tensor:
            object.__setattr__(self, "tensor", f"{self.name}:0")

    def to_json(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "tensor": self.tensor,
        }
        if self.range is not None:
            spec["range"] = list(self.range)
        return spec

    @classmethod
    def from_json(cls, data: Any) -> TensorRecord:
        data = _mapping(data, "a tensor")
        name = data.get("name")
        _require(isinstance(name, str) and bool(name), f"a tensor needs a name, got {name!r}")
        dtype = data.get("dtype")
        _require(dtype in DTYPES, f"tensor {name!r}: dtype must be one of {DTYPES}, got {dtype!r}")
        shape = data.get("shape")
        _require(
            isinstance(shape, Sequence)
            and not isinstance(shape, str)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape),
            f"tensor {name!r}: shape must be a list of sizes (-1 is free), got {shape!r}",
        )
        tensor = data.get("tensor") or ""
        _require(isinstance(tensor, str), f"tensor {name!r}: `tensor` must be a string")
        bounds = data.get("range")
        if bounds is not None:
            _require(
                isinstance(bounds, Sequence) and len(bounds) == 2,
                f"tensor {name!r}: range must be [low, high]",
            )
            low, high = (_number(v, f"tensor {name!r} range") for v in bounds)
            _require(low <= high, f"tensor {name!r}: range low {low:g} is above high {high:g}")
            bounds = (low, high)
        return cls(str(name), str(dtype), tuple(shape), tensor, bounds)


@dataclass(frozen=True)
class Preprocessing:
    """How the decoded RGB uint8 image becomes the graph's first input, in this order.

    channels: "RGB", "BGR" (the channels reversed, as OpenCV gives them) or "GRAY"
              (ITU-R 601-2 luma, PIL's "L");
    size:     [height, width] the graph takes; empty: the image's own size;
    resize:   "bilinear": PIL's (antialiased) bilinear resize of the whole image;
              "bilinear-align-corners": TensorFlow's resize_bilinear(align_corners=True),
              no antialiasing, as TF.js models' own loaders (nsfwjs) do it;
              "bilinear-legacy": TF.js's default resizeBilinear (both flags false);
    scale, offset: each value v (0..255) becomes v * scale + offset (float32);
    defaults: the task's request options when a request does not set them.
    """

    channels: str = "RGB"
    size: tuple[int, int] | None = None
    resize: str = "bilinear"
    scale: float = 1.0
    offset: float = 0.0
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "channels": self.channels,
            "resize": self.resize,
            "scale": self.scale,
            "offset": self.offset,
        }
        if self.size is not None:
            data["size"] = list(self.size)
        if self.defaults:
            data["defaults"] = dict(self.defaults)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Preprocessing:
        data = _mapping(data or {}, "preprocessing")
        unknown = sorted(set(data) - {"channels", "size", "resize", "scale", "offset", "defaults"})
        _require(not unknown, f"preprocessing has unknown key(s) {unknown}")
        channels = str(data.get("channels", "RGB")).upper()
        _require(channels in CHANNELS, f"channels must be one of {CHANNELS}, got {channels!r}")
        resize = data.get("resize", "bilinear")
        _require(resize in RESIZES, f"resize must be one of {RESIZES}, got {resize!r}")
        size = data.get("size")
        if size is not None:
            _require(
                isinstance(size, Sequence)
                and len(size) == 2
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size),
                f"size must be [height, width] of positive integers, got {size!r}",
            )
            size = (size[0], size[1])
        defaults = _mapping(data.get("defaults") or {}, "preprocessing defaults")
        return cls(
            channels=channels,
            size=size,
            resize=resize,
            scale=_number(data.get("scale", 1.0), "scale"),
            offset=_number(data.get("offset", 0.0), "offset"),
            defaults=dict(defaults),
        )


@dataclass(frozen=True)
class Verification:
    """How a converted artifact was checked against the graph it came from: the largest
    absolute difference of any output on fixed inputs, and the bound it had to stay within."""

    max_abs_diff: float
    tolerance: float
    inputs: str  # what both were fed, in words

    def to_json(self) -> dict[str, Any]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "tolerance": self.tolerance,
            "inputs": self.inputs,
        }

    @classmethod
    def from_json(cls, data: Any) -> Verification:
        data = _mapping(data, "a verification")
        diff = _number(data.get("max_abs_diff"), "verified max_abs_diff")
        tolerance = _number(data.get("tolerance"), "verified tolerance")
        _require(
            0 <= diff <= tolerance,
            f"verified max_abs_diff {diff:g} exceeds tolerance {tolerance:g}",
        )
        inputs = data.get("inputs")
        _require(isinstance(inputs, str) and bool(inputs), "verified inputs must be described")
        return cls(diff, tolerance, inputs)

    def summary(self) -> str:
        """One line for logs and statuses."""
        return f"max abs diff {self.max_abs_diff:.2g} (tolerance {self.tolerance:g})"


@dataclass(frozen=True)
class Artifact:
    """One file of a model, next to the catalog: its format and its pinned sha256.

    A converted artifact (TFLITE) carries its verification: without one it is not served.
    `pipeline` names the server code that drives a `.tflite` holding a model's parts as
    signatures (one of PIPELINES); without it the flatbuffer is the whole model."""

    format: str
    file: str
    sha256: str
    verified: Verification | None = None
    pipeline: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"format": self.format, "file": self.file, "sha256": self.sha256}
        if self.verified is not None:
            data["verified"] = self.verified.to_json()
        if self.pipeline is not None:
            data["pipeline"] = self.pipeline
        return data

    @classmethod
    def from_json(cls, data: Any) -> Artifact:
        data = _mapping(data, "an artifact")
        fmt, file, sha = data.get("format"), data.get("file"), data.get("sha256")
        _require(fmt in ARTIFACT_FORMATS, f"artifact format must be one of {ARTIFACT_FORMATS}")
        _require(
            isinstance(file, str) and bool(file) and "/" not in file and not file.startswith("."),
            f"artifact file must be a plain file name next to the catalog, got {file!r}",
        )
        _require(
            isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha),
            f"artifact {file!r}: sha256 must be 64 lowercase hex digits",
        )
        verified = data.get("verified")
        _require(
            (verified is not None) == (fmt == TFLITE),
            f"artifact {file!r}: a {TFLITE} artifact, and only one, carries `verified`",
        )
        pipeline = data.get("pipeline")
        _require(
            pipeline is None or (fmt == TFLITE and pipeline in PIPELINES),
            f"artifact {file!r}: pipeline must be one of {PIPELINES}, on a {TFLITE} artifact",
        )
        verification = None if verified is None else Verification.from_json(verified)
        return cls(fmt, file, sha, verification, pipeline)


@dataclass(frozen=True)
class ModelRecord:
    """Everything a server needs to know to serve one model, besides its files' bytes.

    A zoo catalog record names its artifacts (files next to `catalog.json`); a user's
    signature file (`--signature`) has none, the graph's path comes from `--graph`."""

    name: str
    task: str
    inputs: tuple[TensorRecord, ...]
    outputs: tuple[TensorRecord, ...]
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    labels: tuple[str, ...] = ()
    # True when requests can be stacked along a leading batch dimension.
    batchable: bool = False
    artifacts: tuple[Artifact, ...] = ()
    license: str = ""
    origin: Mapping[str, str] = field(default_factory=dict)
    # Free-form facts shown in metadata (for example an output's layout).
    notes: Mapping[str, str] = field(default_factory=dict)

    def artifact(self, fmt: str) -> Artifact | None:
        return next((a for a in self.artifacts if a.format == fmt), None)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "task": self.task,
            "signature": {
                "inputs": [t.to_json() for t in self.inputs],
                "outputs": [t.to_json() for t in self.outputs],
            },
            "preprocessing": self.preprocessing.to_json(),
            "batchable": self.batchable,
        }
        optional = {
            "labels": list(self.labels),
            "artifacts": [a.to_json() for a in self.artifacts],
            "license": self.license,
            "origin": dict(self.origin),
            "notes": dict(self.notes),
        }
        data.update({k: v for k, v in optional.items() if v})
        return data

    @classmethod
    def from_json(cls, data: Any, name: str | None = None) -> ModelRecord:
        """Parse and check a record; `name` names a signature file's model (it has none)."""
        data = _mapping(data, "a model record")
        name = name or data.get("name")
        _require(isinstance(name, str) and bool(name), "a model record needs a name")
        try:
            return cls._parse(name, data)
        except RecordError as exc:
            raise RecordError(f"model {name!r}: {exc}") from None

    @classmethod
    def _parse(cls, name: str, data: Mapping[str, Any]) -> ModelRecord:
        task = data.get("task", TENSOR)
        _require(task in TASKS, f"task must be one of {', '.join(TASKS)}, got {task!r}")
        # A user's signature file may list `inputs` and `outputs` at the top level.
        signature = _mapping(data.get("signature", data), "signature")
        inputs, outputs = (
            tuple(TensorRecord.from_json(t) for t in _list(signature.get(side), side))
            for side in ("inputs", "outputs")
        )
        _require(bool(inputs and outputs), "a signature needs an input and an output")
        labels = _list(data.get("labels") or [], "labels")
        _require(all(isinstance(x, str) for x in labels), "labels must be strings")
        batchable = data.get("batchable", False)
        _require(isinstance(batchable, bool), "batchable must be true or false")
        artifacts = _list(data.get("artifacts") or [], "artifacts")
        return cls(
            name=name,
            task=task,
            inputs=inputs,
            outputs=outputs,
            preprocessing=Preprocessing.from_json(data.get("preprocessing")),
            labels=tuple(labels),
            batchable=batchable,
            artifacts=tuple(Artifact.from_json(a) for a in artifacts),
            license=str(data.get("license", "")),
            origin=_strings(data.get("origin"), "origin"),
            notes=_strings(data.get("notes"), "notes"),
        )


def _strings(value: Any, what: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(value or {}, what).items()}


def _list(value: Any, what: str) -> Sequence[Any]:
    _require(
        isinstance(value, Sequence) and not isinstance(value, str),
        f"{what} must be a list, got {type(value).__name__}",
    )
    return value
