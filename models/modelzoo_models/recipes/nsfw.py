"""`nsfw`: the MobileNetV2 content classifier of the npm package `nsfwjs` 4.4.0 (MIT).

nsfwjs bundles its TF.js *layers* model (Keras 2.2.4 topology, uint8-quantized weights)
as `.min.js` files that export the model.json object and the weight shard as base64.
`nsfwjs_extract.js` (run with `node`) writes them out as `model.json` + `<shard>.bin`;
here the weights are dequantized as TF.js does (`q * scale + min`, per tensor), the
topology is rebuilt layer by layer with Keras 3 layers, and the model is frozen
(`convert_variables_to_constants_v2`) into a GraphDef with

- input `input`: float32 `[-1, 224, 224, 3]`, RGB in [0, 1] (nsfwjs divides by 255 and
  resizes with `resizeBilinear(..., alignCorners=true)` to 224×224);
- output `probabilities`: float32 `[-1, 5]`, softmax over Drawing, Hentai, Neutral,
  Porn, Sexy (nsfwjs's `NSFW_CLASSES` order).

Dropout layers are the identity at inference and leave no op behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelzoo_models.catalog import Entry
from modelzoo_models.npm_sources import node_modules
from modelzoo_models.recipes import RecipeError

PACKAGE = "nsfwjs"
VERSION = "4.4.0"
MODEL = "mobilenet_v2"
IMAGE_SIZE = 224
LABELS = ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"]  # dist/cjs/nsfw_classes.js
# sha256 of what nsfwjs_extract.js writes: model.json (Node's JSON.stringify of the
# exported object) and the decoded weight shard.
MODEL_JSON_SHA256 = "feffc6868d61e412a4e7a22657a3d07a8a48df6e11688a9e25b77c23cb7b45c9"
SHARD_SHA256 = {
    "group1-shard1of1": "8e7dddbb16acacc1bf1601b1b8a761e730ff934b7f2d7771312b2f000e5f5f13"
}

EXTRACT_SCRIPT = Path(__file__).resolve().parent / "nsfwjs_extract.js"
INPUT = "input"
OUTPUT = "probabilities"

_DTYPES = {
    "float32": np.float32,
    "int32": np.int32,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "float16": np.float16,
}
# The Keras weights of each layer class, in the order Keras 3's `set_weights` takes them.
_WEIGHT_ORDER = {
    "Conv2D": ("kernel", "bias"),
    "DepthwiseConv2D": ("depthwise_kernel", "bias"),
    "Dense": ("kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
}


def model_folder() -> Path:
    """nsfwjs's bundled model files in the pinned node_modules."""
    package = node_modules() / PACKAGE
    version = json.loads((package / "package.json").read_text())["version"]
    if version != VERSION:
        raise RecipeError(f"node_modules has {PACKAGE} {version}, the zoo pins {VERSION}")
    return package / "dist" / "models" / MODEL


def extract(out_dir: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """model.json and the decoded weight shards, via Node, sha256-checked."""
    node = shutil.which("node")
    if node is None:
        raise RecipeError("node is not installed: nsfwjs's model files are JavaScript modules")
    subprocess.run([node, str(EXTRACT_SCRIPT), str(model_folder()), str(out_dir)], check=True)
    raw = (out_dir / "model.json").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != MODEL_JSON_SHA256:
        raise RecipeError(
            f"nsfwjs {MODEL} model.json has sha256 {digest}, pinned {MODEL_JSON_SHA256}"
        )
    model_json = json.loads(raw)
    shards = {}
    for group in model_json["weightsManifest"]:
        for shard in group["paths"]:
            data = (out_dir / f"{shard}.bin").read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if SHARD_SHA256.get(shard) != digest:
                raise RecipeError(f"nsfwjs shard {shard} has sha256 {digest}, not the pinned one")
            shards[shard] = data
    return model_json, shards


def dequantize(model_json: dict[str, Any], shards: dict[str, bytes]) -> dict[str, np.ndarray]:
    """Weights by name, as TF.js decodes them (`tf.io.decodeWeights`)."""
    weights: dict[str, np.ndarray] = {}
    for group in model_json["weightsManifest"]:
        data = b"".join(shards[shard] for shard in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape = tuple(int(d) for d in spec["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            quant = spec.get("quantization")
            stored = _DTYPES[quant["dtype"] if quant else spec["dtype"]]
            size = count * np.dtype(stored).itemsize
            if offset + size > len(data):
                raise RecipeError(f"weight {spec['name']} runs past the end of its shard")
            values = np.frombuffer(
                data, dtype=np.dtype(stored).newbyteorder("<"), count=count, offset=offset
            )
            offset += size
            if quant and quant["dtype"] in ("uint8", "uint16"):
                # TF.js: Float32Array(q.map(v => v * scale + min)): float64 math, float32 store.
                values = values.astype(np.float64) * quant["scale"] + quant["min"]
            weights[spec["name"]] = values.astype(_DTYPES[spec["dtype"]]).reshape(shape)
        if offset != len(data):
            raise RecipeError(f"{len(data) - offset} bytes of the weight shards are unused")
    return weights


# The Keras layers the model uses, with the config keys each one takes (as TF.js saved
# them); list-valued keys become tuples. Anything else in the topology is refused.
_LAYERS: dict[str, tuple[str, ...]] = {
    "ZeroPadding2D": ("padding",),
    "Conv2D": (
        "filters", "kernel_size", "strides", "padding", "dilation_rate", "activation", "use_bias",
    ),
    "DepthwiseConv2D": (
        "kernel_size", "strides", "padding", "depth_multiplier", "dilation_rate", "activation",
        "use_bias",
    ),
    "BatchNormalization": ("axis", "epsilon", "momentum", "center", "scale"),
    "ReLU": ("max_value", "negative_slope", "threshold"),
    "Add": (),
    "AveragePooling2D": ("pool_size", "strides", "padding"),
    "Flatten": (),
    "Dense": ("units", "activation", "use_bias"),
    "Dropout": ("rate",),
}  # fmt: skip


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _layer(class_name: str, config: dict[str, Any]):
    import keras

    name = config["name"]
    if class_name not in _LAYERS:
        raise RecipeError(f"layer class {class_name} ({name}) is not supported")
    kwargs = {key: _tuples(config[key]) for key in _LAYERS[class_name]}
    return getattr(keras.layers, class_name)(**kwargs, name=name)


def keras_model(model_json: dict[str, Any], weights: dict[str, np.ndarray]):
    """The TF.js layers model rebuilt with Keras 3 layers, weights loaded."""
    import keras

    topology = model_json["modelTopology"]["model_config"]
    if topology["class_name"] not in ("Model", "Functional"):
        raise RecipeError(f"expected a functional Keras model, got {topology['class_name']}")
    config = topology["config"]
    for layer in config["layers"]:
        if layer["config"].get("data_format", "channels_last") != "channels_last":
            raise RecipeError(f"layer {layer['name']} is not channels_last")
    tensors: dict[str, Any] = {}
    built = []
    for layer in config["layers"]:
        name, class_name = layer["name"], layer["class_name"]
        if class_name == "InputLayer":
            shape = layer["config"]["batch_input_shape"][1:]
            tensors[name] = keras.Input(shape=tuple(shape), dtype="float32", name=name)
            continue
        if len(layer["inbound_nodes"]) != 1:
            raise RecipeError(f"layer {name} is shared; only single-use layers are supported")
        inbound = [
            tensors[source]
            for source, node_index, tensor_index, *_ in layer["inbound_nodes"][0]
            if node_index == 0 and tensor_index == 0
        ]
        if len(inbound) != len(layer["inbound_nodes"][0]):
            raise RecipeError(f"layer {name} reads a second node or tensor of a layer")
        keras_layer = _layer(class_name, layer["config"])
        tensors[name] = keras_layer(inbound if class_name == "Add" else inbound[0])
        built.append((keras_layer, class_name, layer["config"]))
    inputs = [tensors[n] for n, *_ in config["input_layers"]]
    outputs = [tensors[n] for n, *_ in config["output_layers"]]
    model = keras.Model(inputs=inputs[0], outputs=outputs[0], name="nsfwjs_mobilenet_v2")

    used = set()
    for keras_layer, class_name, layer_config in built:
        names = _WEIGHT_ORDER.get(class_name, ())
        if class_name == "BatchNormalization":
            names = tuple(
                n
                for n in names
                if (n != "gamma" or layer_config["scale"])
                and (n != "beta" or layer_config["center"])
            )
        elif names and not layer_config.get("use_bias", True):
            names = names[:-1]
        values = [weights[f"{keras_layer.name}/{n}"] for n in names]
        used.update(f"{keras_layer.name}/{n}" for n in names)
        if len(values) != len(keras_layer.weights):
            raise RecipeError(f"layer {keras_layer.name} takes {len(keras_layer.weights)} weights")
        if values:
            keras_layer.set_weights(values)
    unused = sorted(set(weights) - used)
    if unused:
        raise RecipeError(f"weights not used by any layer: {unused[:5]}")
    return model


def frozen_graph_def(model):
    """The model as a frozen GraphDef: `input` → `probabilities`."""
    import tensorflow as tf
    from tensorflow.core.framework import attr_value_pb2, node_def_pb2
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name=INPUT)
    serve = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    if [t.name for t in frozen.inputs] != [f"{INPUT}:0"]:
        raise RecipeError(f"frozen inputs are {[t.name for t in frozen.inputs]}")
    (output,) = frozen.outputs
    probabilities = node_def_pb2.NodeDef(
        name=OUTPUT,
        op="Identity",
        input=[output.name[:-2] if output.name.endswith(":0") else output.name],
    )
    probabilities.attr["T"].CopyFrom(attr_value_pb2.AttrValue(type=tf.float32.as_datatype_enum))
    graph_def.node.append(probabilities)
    for node in graph_def.node:
        node.device = ""
    return graph_def


def build(entry: Entry, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nsfwjs-") as tmp:
        model_json, shards = extract(Path(tmp))
    weights = dequantize(model_json, shards)
    log(f"{len(weights)} weights dequantized from {sum(map(len, shards.values()))} bytes")
    graph_def = frozen_graph_def(keras_model(model_json, weights))
    out.write_bytes(graph_def.SerializeToString(deterministic=True))
    log(f"{len(graph_def.node)} nodes, ops {sorted({n.op for n in graph_def.node})}")
    return {"labels": list(LABELS)}
