"""A TensorFlow SavedModel → one frozen GraphDef of one signature, checked before any of
it runs.

Loading a SavedModel runs its functions (resource initialisers, restore functions of
custom saveables), so `check_saved_model` reads `saved_model.pb` as a protobuf and
holds every op of the meta graph and of EVERY function in its library to the graph
policy first: all functions, not only those the signature reaches, because loading
builds and may run functions the signature never calls. The only exception is the
saver's own pair of functions (SaveV2/RestoreV2, named by the meta graph's `saver_def`
and called from nowhere else): TensorFlow 2's loader restores variables with its own
reader and never runs them, and freezing leaves them out of what is served. The
variable plumbing that loading needs (`_LOAD_OPS`) is allowed here only; the frozen
graph is then checked again exactly as a `.pb` is, where no variable op may remain.
Asset files and lookup tables initialised from files are refused: the model would read
files at load.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from modelzoo_models.contract import DTYPES, ModelRecord, RefusedGraph, TensorRecord
from modelzoo_models.graph_policy import GraphLimits, check_graph
from modelzoo_models.safe_tar import is_archive

SAVED_MODEL_FILE = "saved_model.pb"
DEFAULT_SIGNATURE = "serving_default"
# In-process variable handling that loading a SavedModel needs and freezing removes:
# creating, reading and assigning resource variables; no file, network or Python access.
_LOAD_OPS = frozenset(
    {"VarHandleOp", "ReadVariableOp", "AssignVariableOp", "VarIsInitializedOp"}
    | {"StatefulPartitionedCall"}  # calls a function of the library, itself checked
)
_FILE_TABLE = re.compile(r"^InitializeTableFromTextFile")
_ASSET_FOLDERS = ("assets", "assets.extra")


def is_saved_model(path: Path) -> bool:
    """A folder (a SavedModel's layout) or a gzip archive of one; anything else is a `.pb`."""
    return path.is_dir() or is_archive(path)


def _check_tree(root: Path, max_bytes: int) -> None:
    """Plain files only, within the size cap, and no assets."""
    total = 0
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise RefusedGraph(f"SavedModel file {relative!r} is a link or special file")
            if path.is_file():
                total += path.stat().st_size
                if total > max_bytes:
                    raise RefusedGraph(f"SavedModel is larger than {max_bytes} bytes")
            if relative.split("/")[0] in _ASSET_FOLDERS and path.is_file():
                raise RefusedGraph(
                    f"SavedModel ships asset file {relative!r}: models that read files at "
                    "load (vocabularies, tables) are not served"
                )


def read_meta_graph(root: Path, max_bytes: int):
    """The SavedModel's one MetaGraphDef, parsed without running anything."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    path = root / SAVED_MODEL_FILE
    if not path.is_file():
        raise RefusedGraph(f"no {SAVED_MODEL_FILE} in {root}: not a SavedModel folder")
    if path.stat().st_size > max_bytes:
        raise RefusedGraph(f"{SAVED_MODEL_FILE} is larger than {max_bytes} bytes")
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(path.read_bytes())
    except DecodeError as exc:
        raise RefusedGraph(f"{SAVED_MODEL_FILE} is not a valid SavedModel protobuf") from exc
    if len(saved_model.meta_graphs) != 1:
        count = len(saved_model.meta_graphs)
        raise RefusedGraph(f"SavedModel has {count} meta graphs; one is served")
    return saved_model.meta_graphs[0]


def _called(nodes: Iterable) -> set[str]:
    """Every function the nodes name, as their op or in a function-valued attribute."""
    names = set()
    for node in nodes:
        names.add(node.op)
        for value in node.attr.values():
            names.add(value.func.name)
            names.update(f.name for f in value.list.func)
    return names


def _saver_parts(meta_graph) -> tuple[set[str], set[str]]:
    """The saver's nodes and the functions only they call (see the module's doc)."""
    saver = meta_graph.saver_def
    nodes = {name.split(":")[0] for name in (saver.save_tensor_name, saver.restore_op_name) if name}
    graph = meta_graph.graph_def
    functions = _called(n for n in graph.node if n.name in nodes)
    functions &= {f.signature.name for f in graph.library.function}
    elsewhere = _called(n for n in graph.node if n.name not in nodes)
    for function in graph.library.function:
        if function.signature.name not in functions:
            elsewhere |= _called(function.node_def)
    elsewhere |= set(meta_graph.object_graph_def.concrete_functions)
    if functions & elsewhere:  # a saver function something else calls is checked like any
        return set(), set()
    return nodes, functions


def check_saved_model(
    root: Path,
    signature_name: str = DEFAULT_SIGNATURE,
    limits: GraphLimits = GraphLimits(),
    max_bytes: int = 1 << 30,
) -> None:
    """RefusedGraph unless the SavedModel at `root` may be loaded (see the module's doc)."""
    _check_tree(root, max_bytes)
    meta_graph = read_meta_graph(root, max_bytes)
    if meta_graph.asset_file_def:
        raise RefusedGraph("SavedModel lists asset files: models that read files are not served")
    if signature_name not in meta_graph.signature_def:
        known = ", ".join(sorted(k for k in meta_graph.signature_def if not k.startswith("__")))
        raise RefusedGraph(f"SavedModel has no signature {signature_name!r} (it has: {known})")
    saver_nodes, saver_functions = _saver_parts(meta_graph)
    checked = type(meta_graph.graph_def)()
    checked.CopyFrom(meta_graph.graph_def)
    del checked.node[:]
    checked.node.extend(n for n in meta_graph.graph_def.node if n.name not in saver_nodes)
    del checked.library.function[:]
    checked.library.function.extend(
        f for f in meta_graph.graph_def.library.function if f.signature.name not in saver_functions
    )
    functions = checked.library.function
    for node in [*checked.node, *(n for f in functions for n in f.node_def)]:
        if _FILE_TABLE.match(node.op):
            raise RefusedGraph(
                f"op {node.op!r} (node {node.name!r}) initialises a lookup table from a "
                "file: models that read files are not served"
            )
    check_graph(checked, limits, also_allowed=_LOAD_OPS)


@dataclass(frozen=True)
class Frozen:
    """One signature as a frozen GraphDef: its inputs and outputs by the signature's keys,
    each naming its tensor in `graph_def`."""

    graph_def: object
    inputs: tuple[TensorRecord, ...]
    outputs: tuple[TensorRecord, ...]


def _record(key: str, spec, tensor) -> TensorRecord:
    dtype = np.dtype(spec.dtype.as_numpy_dtype).name if spec.dtype.is_numpy_compatible else ""
    if dtype not in DTYPES:
        raise RefusedGraph(f"signature tensor {key!r} has dtype {spec.dtype.name}, not served")
    if spec.shape.rank is None:
        raise RefusedGraph(f"signature tensor {key!r} has no known rank; give a signature file")
    shape = tuple(-1 if d is None else d for d in spec.shape.as_list())
    return TensorRecord(key, dtype, shape, tensor.name)


def freeze(root: Path, signature_name: str = DEFAULT_SIGNATURE) -> Frozen:
    """Load the (checked) SavedModel and freeze one signature's variables into constants."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    try:
        # Held while freezing: a signature refers to the loaded object's variables weakly.
        loaded = tf.saved_model.load(str(root))
        function = loaded.signatures[signature_name]
        frozen = convert_variables_to_constants_v2(function)
    except (ValueError, TypeError, KeyError, tf.errors.OpError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RefusedGraph(f"TensorFlow cannot freeze the SavedModel: {reason[:300]}") from exc
    # A signature's inputs are keyword arguments, its outputs a dict: the frozen function
    # takes and returns them flattened, in the order of their sorted keys.
    inputs = sorted(function.structured_input_signature[1].items())
    outputs = sorted(function.structured_outputs.items())
    if len(inputs) != len(frozen.inputs) or len(outputs) != len(frozen.outputs):
        raise RefusedGraph("the frozen signature's tensors do not match the SavedModel's")
    return Frozen(
        frozen.graph.as_graph_def(),
        tuple(_record(k, s, t) for (k, s), t in zip(inputs, frozen.inputs, strict=True)),
        tuple(_record(k, s, t) for (k, s), t in zip(outputs, frozen.outputs, strict=True)),
    )


def _bind_side(given: tuple[TensorRecord, ...], frozen: Mapping[str, TensorRecord], side: str):
    bound = []
    for record in given:
        found = frozen.get(record.name)
        if found is None:
            raise RefusedGraph(
                f"signature file names {side} {record.name!r}; the SavedModel's signature "
                f"has {', '.join(frozen)}"
            )
        if record.dtype != found.dtype:
            raise RefusedGraph(
                f"signature file gives {side} {record.name!r} dtype {record.dtype}, "
                f"the SavedModel has {found.dtype}"
            )
        bound.append(replace(record, tensor=found.tensor))
    return tuple(bound)


def bind(record: ModelRecord, frozen: Frozen) -> ModelRecord:
    """A user's signature file over a frozen SavedModel: its tensor names are the
    signature's keys; each is pointed at its tensor in the frozen graph. Every input must
    be named (the graph needs them all); outputs may be a subset."""
    inputs = {t.name: t for t in frozen.inputs}
    missing = sorted(set(inputs) - {t.name for t in record.inputs})
    if missing:
        raise RefusedGraph(f"signature file leaves out input(s) {', '.join(missing)}")
    return replace(
        record,
        inputs=_bind_side(record.inputs, inputs, "input"),
        outputs=_bind_side(record.outputs, {t.name: t for t in frozen.outputs}, "output"),
    )
