"""`modelzoo-prepare`: a frozen graph → a builtin-ops `.tflite`, verified against the graph.

op allowlist (the server's graph reader) → TensorFlow's own TFLiteConverter with
TFLITE_BUILTINS only → the graph (TensorFlow) and the flatbuffer (LiteRT, as the server
runs it) on the same fixed inputs → the `.tflite` and an Artifact carrying its sha256 and
the largest difference seen. A graph that does not convert, or not closely enough, raises
NotConverted with the reason; it keeps its graphdef and TensorFlow serves it.

A user's graph goes through `prepare_graph`, which writes the outcome either way as a
record the server reads (modelzoo_models.prepared): `modelzoo-prepare --prepared DIR`, run
by a pod's `prepare-model` init container and by `modelzoo-server --graph` before it loads.

A SavedModel (a folder, or a `.tar.gz` of one) is first frozen into such a graph
(`saved_model_entry`): checked before TensorFlow runs any of it, one signature frozen,
then held to the same policy and conversion as any `.pb`.

The zoo build runs this for every entry (run_recipes); it needs TensorFlow, the server on
LiteRT never does.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from modelzoo_models import prepared
from modelzoo_models.contract import (
    GRAPHDEF,
    IMAGE_CLASSIFICATION,
    TENSOR,
    TFLITE,
    Artifact,
    ModelRecord,
    RefusedGraph,
    Unservable,
    Verification,
    sha256_file,
)
from modelzoo_models.digest import model_sha256
from modelzoo_models.graph_policy import check_graph
from modelzoo_models.safe_tar import ArchiveLimits, extract
from modelzoo_models.saved_model import (
    DEFAULT_SIGNATURE,
    SAVED_MODEL_FILE,
    bind,
    check_saved_model,
    freeze,
    is_saved_model,
)
from modelzoo_server.litert import LiteModel, builtin_ops
from modelzoo_server.model_entry import ModelEntry, from_files
from modelzoo_server.runtime import GraphModel, LoadLimits, read_graph_def, read_model_file
from modelzoo_server.runtimes import Runtime
from modelzoo_server.signature import FeedLimits, Signature
from modelzoo_server.tasks import TASKS

# Mid-size pictures (larger than every zoo input, so each resize runs) of no particular
# content: noise, smooth colour fields and a gradient. Seeded: the same bytes every build.
_IMAGE_SIZE = (240, 320)  # height, width
_SEED = 0
# For a user's graph (the zoo states one per entry, catalog.py).
DEFAULT_TOLERANCE = 1e-3


class NotConverted(Exception):
    """The graph has no verified `.tflite`; the message says why, in one line."""


def convert(graph_def, signature: Signature) -> bytes:
    """A checked GraphDef → TFLite flatbuffer bytes, builtin ops only (or NotConverted)."""
    # Here, not at the top: `modelzoo-models dir` imports the build, and needs no TensorFlow.
    import tensorflow as tf

    # Not exported under tf.lite in TensorFlow 2.21; this is where the converter raises it.
    from tensorflow.lite.python.convert_phase import ConverterError

    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
        inputs = [graph.get_tensor_by_name(s.tensor) for s in signature.inputs]
        outputs = [graph.get_tensor_by_name(s.tensor) for s in signature.outputs]
        converter = tf.compat.v1.lite.TFLiteConverter(graph_def, inputs, outputs)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        with _stderr_discarded():
            data = converter.convert()
    except ConverterError as exc:
        raise NotConverted(_conversion_failure(str(exc))) from exc
    builtin_ops(data)  # the server's own check, so a file we write is one it serves
    return data


@contextlib.contextmanager
def _stderr_discarded() -> Iterator[None]:
    """The converter's C++ writes each MLIR diagnostic to fd 2 as well as into the exception
    (hundreds of lines for mtcnn); the build log gets the exception's one-line summary."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _conversion_failure(message: str) -> str:
    """The converter's pages of MLIR → which ops lacked a builtin kernel, and on what type."""
    listed = re.search(r"TF Select ops: ([\w, ]+)", message)
    if not listed:
        first = next((ln for ln in message.splitlines() if "error:" in ln), message)
        return f"TFLite conversion failed: {first.strip()[:300]}"
    ops = [op.strip() for op in listed.group(1).split(",")]
    uses = re.findall(r"^\s*tf\.(\w+)\((.*)$", message, flags=re.MULTILINE)

    def on_float64(op: str) -> bool:
        signatures = [args for name, args in uses if name == op]
        return bool(signatures) and all("f64" in args for args in signatures)

    described = [f"{op} (float64)" if on_float64(op) else op for op in ops]
    return f"no TFLite builtin kernel for {len(ops)} op(s): {', '.join(described)}"


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(_SEED)
    height, width = _IMAGE_SIZE
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    fields = [
        np.asarray(
            Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(
                (width, height), Image.Resampling.BICUBIC
            )
        )
        for _ in range(2)
    ]
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    column = np.linspace(255, 0, height, dtype=np.float32)[:, None, None]
    gradient = np.broadcast_to((ramp + column) / 2, (height, width, 3)).astype(np.uint8)
    return [noise, *fields, gradient]


def verification_feeds(entry: ModelEntry) -> tuple[list[dict[str, np.ndarray]], str]:
    """Fixed feeds through the task's own preprocessing (as the server builds them)."""
    if entry.task == TENSOR:
        raise NotConverted("prepare verifies image models only; a tensor model keeps TensorFlow")
    task = TASKS[entry.task](entry)
    options = task.options({})
    feeds = [task.preprocess(image, options) for image in _images()]
    height, width = _IMAGE_SIZE
    described = (
        f"{len(feeds)} synthetic {width}x{height} images (noise, smooth colour fields, "
        f"gradient; seed {_SEED}) through the task's preprocessing"
    )
    return feeds, described


def _max_abs_diff(name: str, expected: np.ndarray, actual: np.ndarray) -> float:
    if expected.shape != actual.shape:
        raise NotConverted(f"output {name!r}: shape {actual.shape}, TensorFlow {expected.shape}")
    nan = np.isnan(expected)
    if not np.array_equal(nan, np.isnan(actual)):
        raise NotConverted(f"output {name!r}: NaN where TensorFlow has none, or the reverse")
    if not nan.all():
        return float(np.abs(expected[~nan].astype(np.float64) - actual[~nan]).max())
    return 0.0


def compare(
    entry: ModelEntry,
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    tolerance: float,
) -> float:
    """The largest absolute difference of any output; NotConverted beyond `tolerance` or
    when a classifier's top class changes (the one thing a user sees of its scores)."""
    worst = max(_max_abs_diff(n, expected[n], actual[n]) for n in expected)
    if worst > tolerance:
        raise NotConverted(f"LiteRT differs from TensorFlow by {worst:.3g} (> {tolerance:g})")
    if entry.task == IMAGE_CLASSIFICATION:
        for name, values in expected.items():
            if not np.array_equal(values.argmax(-1), actual[name].argmax(-1)):
                raise NotConverted(f"output {name!r}: LiteRT's top class differs")
    return worst


def _batches(
    entry: ModelEntry, feeds: list[dict[str, np.ndarray]]
) -> Iterable[dict[str, np.ndarray]]:
    """Each feed alone, then all of them as one batch where the inputs stack (which also
    checks that the flatbuffer resizes to another batch size)."""
    yield from feeds
    if entry.batchable and all(s.shape and s.shape[0] == -1 for s in entry.signature.inputs):
        yield {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}


def prepare(entry: ModelEntry, out: Path, tolerance: float, threads: int = 1) -> Artifact:
    """Convert `entry`'s graph to `out` (a `.tflite`) and verify it; NotConverted if not.

    The allowlist and the sha256 are checked before anything else (RefusedGraph)."""
    graph_def = read_graph_def(entry.path, entry.sha256)
    feeds, described = verification_feeds(entry)
    data = convert(graph_def, entry.signature)
    candidate = LiteModel(data, entry.signature, FeedLimits(), threads)
    batches = list(_batches(entry, feeds))
    if len(batches) > len(feeds):
        described += ", each alone and all as one batch"
    return verified(entry, graph_def, data, candidate, batches, described, out, tolerance)


def verified(
    entry: ModelEntry,
    graph_def,
    data: bytes,
    candidate: Runtime,
    feeds: Sequence[Mapping[str, np.ndarray]],
    described: str,
    out: Path,
    tolerance: float,
    pipeline: str | None = None,
) -> Artifact:
    """Run the graph and `candidate` (LiteRT on `data`) on every feed; write `data` to `out`
    and return its Artifact when they agree within `tolerance` (else NotConverted)."""
    reference = GraphModel(graph_def, entry.signature, FeedLimits())
    worst = max(
        compare(entry, reference.run(feed), candidate.run(feed), tolerance) for feed in feeds
    )
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    verification = Verification(worst, tolerance, described)
    return Artifact(TFLITE, out.name, sha256_file(out), verification, pipeline)


def _unpacked(source: Path, into: Path, sha256: str | None, limits: LoadLimits) -> Path:
    """The SavedModel folder of `source` once its sha256 (when pinned) is checked: of the
    archive's bytes, which are then the bytes unpacked into `into`; of a folder's listing
    (modelzoo_models.digest)."""
    if source.is_dir():
        if sha256 and (actual := model_sha256(source)) != sha256.lower():
            raise RefusedGraph(f"sha256 mismatch: expected {sha256.lower()}, folder has {actual}")
        return source
    data = read_model_file(source, sha256, limits.max_file_bytes, "SavedModel archive")
    extract(data, into, ArchiveLimits(max_bytes=limits.max_file_bytes))
    if (into / SAVED_MODEL_FILE).is_file():
        return into
    top = list(into.iterdir())
    if len(top) == 1 and (top[0] / SAVED_MODEL_FILE).is_file():
        return top[0]
    raise RefusedGraph(
        f"the archive has no {SAVED_MODEL_FILE} at its top or in its one top-level folder"
    )


def saved_model_entry(
    source: Path,
    graph_out: Path,
    name: str,
    *,
    signature_file: Path | None = None,
    signature_name: str = DEFAULT_SIGNATURE,
    sha256: str | None = None,
    limits: LoadLimits = LoadLimits(),
) -> ModelEntry:
    """A SavedModel (folder or `.tar.gz`) → `graph_out`, a frozen `.pb` checked as any
    other, and the signature file next to it (`.json`); returns its entry.

    In order: the sha256, safe unpacking (into a temporary folder next to `graph_out`), the
    SavedModel check before TensorFlow runs any of it, freezing one signature, the graph
    policy. The record: the user's signature file bound to the frozen tensors, or else
    the signature's own keys, dtypes and shapes as a `tensor` model."""
    user = from_files(source, signature_file, name, sha256) if signature_file else None
    sha256 = user.sha256 if user else sha256  # a signature file may carry the pin
    graph_out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=graph_out.parent, prefix=".unpacked-") as into:
        root = _unpacked(source, Path(into), sha256, limits)
        check_saved_model(root, signature_name, limits.graph, limits.max_file_bytes)
        frozen = freeze(root, signature_name)
    check_graph(frozen.graph_def, limits.graph)
    if user:
        record = bind(user.record, frozen)
    else:
        record = ModelRecord(name, TENSOR, frozen.inputs, frozen.outputs)
    graph_out.write_bytes(frozen.graph_def.SerializeToString(deterministic=True))
    graph_out.with_suffix(".json").write_text(json.dumps(record.to_json(), indent=2) + "\n")
    return ModelEntry.of(record, graph_out, name, sha256_file(graph_out))


def prepare_graph(
    graph: Path,
    into: Path,
    *,
    signature_file: Path | None = None,
    signature_name: str = DEFAULT_SIGNATURE,
    sha256: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ModelRecord:
    """A user's graph (a `.pb` with its signature file, or a SavedModel) → `into`: the
    record that says which runtime serves it, and the files it names (see
    modelzoo_models.prepared). A graph that does not convert is an outcome the record
    states; a refused one (Unservable) leaves no record."""
    into.mkdir(parents=True, exist_ok=True)
    record_file = prepared.record_path(into, graph)
    record_file.unlink(missing_ok=True)  # an earlier outcome must not outlive a refusal
    name = prepared.stem(graph)
    user = from_files(graph, signature_file, name, sha256) if signature_file else None
    pin = user.sha256 if user else sha256  # a signature file may carry the pin
    made_from = prepared.provenance(graph, pin, signature_file, signature_name)
    files: tuple[Artifact, ...] = ()
    if is_saved_model(graph):
        entry = saved_model_entry(
            graph,
            into / f"{name}.frozen.pb",
            name,
            signature_file=signature_file,
            signature_name=signature_name,
            sha256=pin,
        )
        assert entry.sha256 is not None
        files = (Artifact(GRAPHDEF, entry.path.name, entry.sha256),)
    else:
        assert user is not None, "a .pb needs its signature file"
        entry = user
    notes = {k: v for k, v in entry.record.notes.items() if k != TFLITE}
    try:
        files += (prepare(entry, into / f"{name}.tflite", tolerance),)
    except NotConverted as exc:
        notes[TFLITE] = f"not converted: {exc}"
    origin = {**entry.record.origin, **made_from}
    record = replace(entry.record, artifacts=files, notes=notes, origin=origin)
    prepared.write(record, record_file)
    return record


def _default_out(graph: Path) -> Path:
    if is_saved_model(graph):  # a folder or `name.tar.gz`: `name.tflite` next to it
        return graph.parent / f"{graph.name.split('.')[0]}.tflite"
    return graph.with_suffix(".tflite")


def argument_parser() -> argparse.ArgumentParser:
    """`modelzoo-prepare`'s flags (the operator's builders are tested against them)."""
    parser = argparse.ArgumentParser(
        prog="modelzoo-prepare",
        description="Convert a frozen graph to a builtin-ops .tflite and verify it against "
        "the graph; prints the artifact record (JSON). Exit 1: not converted (the reason on "
        "stderr), 2: the graph or signature is refused. With --prepared DIR: writes the "
        "record the server reads and prints the outcome; exit 0 converted or not, 2 refused.",
    )
    parser.add_argument(
        "--graph",
        type=Path,
        required=True,
        help="a frozen GraphDef .pb, or a SavedModel (a folder or a .tar.gz of one), which is "
        "first frozen into OUT's .pb, with its signature in OUT's .json",
    )
    parser.add_argument(
        "--signature",
        type=Path,
        help="JSON/YAML signature file of the graph (a SavedModel's own signature otherwise)",
    )
    parser.add_argument(
        "--signature-name",
        default=DEFAULT_SIGNATURE,
        help=f"the SavedModel signature to freeze (default {DEFAULT_SIGNATURE})",
    )
    parser.add_argument(
        "--sha256", help="expected sha256 of the graph file (modelzoo-digest prints it)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, help="the .tflite to write (default: next to --graph)")
    where.add_argument(
        "--prepared",
        type=Path,
        metavar="DIR",
        help="write the record that says which runtime serves the graph, and the files it "
        "names, into DIR (modelzoo-server --prepared DIR reads them); exit 0 whether the "
        "graph converts or not, printing the outcome as one line",
    )
    parser.add_argument(
        "--termination-log",
        type=Path,
        metavar="FILE",
        help="with --prepared: also write that line, or the refusal, into FILE (a pod's "
        "/dev/termination-log, which the operator reads into the model's status)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"largest absolute difference of any output allowed (default {DEFAULT_TOLERANCE:g})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ info and warning lines drown the outcome (as in modelzoo-server).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argument_parser()
    args = parser.parse_args(argv)
    saved_model = is_saved_model(args.graph)
    if not saved_model and args.signature is None:
        parser.error("a .pb needs --signature FILE describing its input and output tensors")
    if args.termination_log and not args.prepared:
        parser.error("--termination-log goes with --prepared")
    if args.prepared:
        return _prepare_into(args)
    out = args.out or _default_out(args.graph)
    try:
        if saved_model:
            entry = saved_model_entry(
                args.graph,
                out.with_suffix(".pb"),
                out.stem,
                signature_file=args.signature,
                signature_name=args.signature_name,
                sha256=args.sha256,
            )
            print(f"modelzoo-prepare: froze {args.graph} into {entry.path}", file=sys.stderr)
        else:
            entry = from_files(args.graph, args.signature, args.graph.stem, args.sha256)
        artifact = prepare(entry, out, args.tolerance)
    except Unservable as exc:
        print(f"modelzoo-prepare: refused: {exc}", file=sys.stderr)
        return 2
    except NotConverted as exc:
        print(f"modelzoo-prepare: not converted: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(artifact.to_json(), indent=2))
    return 0


def _prepare_into(args: argparse.Namespace) -> int:
    try:
        record = prepare_graph(
            args.graph,
            args.prepared,
            signature_file=args.signature,
            signature_name=args.signature_name,
            sha256=args.sha256,
            tolerance=args.tolerance,
        )
    except Unservable as exc:
        line, code = f"modelzoo-prepare: refused: {exc}", 2
        print(line, file=sys.stderr)
    else:
        line, code = prepared.outcome(record), 0
        print(line)
    if args.termination_log:
        args.termination_log.write_text(line + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
