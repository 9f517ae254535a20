"""`mobilenet`: Google's MobileNet v1 1.0_224 (ImageNet) from inside the PyPI package `nudity`.

`nudity` 0.2.3 (an sdist) ships `nudity/files/retrained_graph.pb`: TF-Slim's frozen
MobileNet v1 1.0_224 with a 2-class head retrained on top (TensorFlow's `retrain.py`).
The original 1001-way ImageNet classifier is still in it, untouched: `input` →
`MobilenetV1/Predictions/Reshape` (logits). We take the sdist with `pip download`
(the package is never installed and its TF1 code never imported), read the `.pb` out
of the tarball, check both sha256 pins, and keep only that subgraph, with

- the `input` placeholder's batch dimension made free (`[-1, 224, 224, 3]`), so
  requests can be stacked (every op on the path is per-example: the final Reshape
  is to `[-1, 1001]`, the squeeze names its axes);
- a `Softmax` named `probabilities` on the logits (what TF-Slim's
  `MobilenetV1/Predictions/Softmax` was, before retrain.py cut it away).

Index 0 is TF-Slim's "background"; 1..1000 are ImageNet-1k in synset order, named by
`IMAGENET_CLASSES` of the npm package `@tensorflow-models/mobilenet` (Apache-2.0),
which serves this same network in TF.js.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelzoo_models.catalog import Entry
from modelzoo_models.npm_sources import node_modules
from modelzoo_models.recipes import RecipeError
from modelzoo_models.store import cache_root

PACKAGE = "nudity"
VERSION = "0.2.3"
SDIST = f"{PACKAGE}-{VERSION}.tar.gz"
SDIST_SHA256 = "d26e10346f00ad76b1166a221f1b56877d154ca343e82c6e6c8e738ca5f27d5f"
GRAPH_MEMBER = f"{PACKAGE}-{VERSION}/nudity/files/retrained_graph.pb"
GRAPH_SHA256 = "3b90af536f810f5f75e9f6d431bc2e8a3c4fc2ff4f693aa0dd4ae429816f8735"

INPUT = "input"
LOGITS = "MobilenetV1/Predictions/Reshape"
PROBABILITIES = "probabilities"
IMAGE_SIZE = 224
NUM_CLASSES = 1001

LABELS_PACKAGE = "@tensorflow-models/mobilenet"
LABELS_FILE = "dist/imagenet_classes.js"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sdist_path(log: Callable[[str], None] = lambda _m: None) -> Path:
    """The pinned `nudity` sdist in the cache, downloaded (not installed) on first use."""
    target = cache_root() / "pypi" / SDIST
    if target.exists() and _sha256(target.read_bytes()) == SDIST_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"pip download {PACKAGE}=={VERSION} (sdist, not installed)")
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                PACKAGE,
                "--dest",
                tmp,
                f"{PACKAGE}=={VERSION}",
            ],
            check=True,
        )
        got = Path(tmp) / SDIST
        if not got.exists():
            raise RecipeError(f"pip download gave {os.listdir(tmp)}, not {SDIST}")
        digest = _sha256(got.read_bytes())
        if digest != SDIST_SHA256:
            raise RecipeError(f"{SDIST} has sha256 {digest}, pinned {SDIST_SHA256}")
        os.replace(got, target)
    return target


def original_graph_bytes(log: Callable[[str], None] = lambda _m: None) -> bytes:
    """The untouched `retrained_graph.pb` as the package ships it (sha256-checked)."""
    with tarfile.open(sdist_path(log), "r:gz") as tar:
        member = tar.getmember(GRAPH_MEMBER)
        handle = tar.extractfile(member)
        if handle is None:
            raise RecipeError(f"{GRAPH_MEMBER} in {SDIST} is not a regular file")
        data = handle.read()
    digest = _sha256(data)
    if digest != GRAPH_SHA256:
        raise RecipeError(f"{GRAPH_MEMBER} has sha256 {digest}, pinned {GRAPH_SHA256}")
    return data


def imagenet_labels() -> list[str]:
    """["background", 1000 ImageNet class names] from @tensorflow-models/mobilenet."""
    source = node_modules() / LABELS_PACKAGE / LABELS_FILE
    node = shutil.which("node")
    if node is None:
        raise RecipeError("node is not installed: the ImageNet labels come from an npm package")
    script = (
        "const c = require(process.argv[1]).IMAGENET_CLASSES;"
        "process.stdout.write(JSON.stringify(c));"
    )
    out = subprocess.run(
        [node, "-e", script, str(source)], check=True, capture_output=True, text=True
    ).stdout
    classes = json.loads(out)
    if sorted(classes, key=int) != [str(i) for i in range(NUM_CLASSES - 1)]:
        raise RecipeError(f"{source} does not name exactly the classes 0..{NUM_CLASSES - 2}")
    return ["background", *(str(classes[str(i)]) for i in range(NUM_CLASSES - 1))]


def _ancestors(graph_def, target: str) -> list:
    """The nodes `target` depends on (itself included), in the graph's own order."""
    by_name = {node.name: node for node in graph_def.node}
    keep, todo = set(), [target]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        todo.extend(i.lstrip("^").split(":")[0] for i in by_name[name].input)
    return [node for node in graph_def.node if node.name in keep]


def imagenet_graph_def(original: bytes):
    """The ImageNet classifier inside the retrained graph, batch-free, with a softmax."""
    import tensorflow as tf
    from tensorflow.core.framework import attr_value_pb2, graph_pb2, node_def_pb2

    full = graph_pb2.GraphDef()
    full.ParseFromString(original)
    graph_def = graph_pb2.GraphDef()
    graph_def.node.extend(_ancestors(full, LOGITS))
    nodes = {node.name: node for node in graph_def.node}
    placeholders = [
        n.name for n in graph_def.node if n.op in ("Placeholder", "PlaceholderWithDefault")
    ]
    if placeholders != [INPUT]:
        raise RecipeError(f"expected the one input {INPUT!r}, the subgraph has {placeholders}")
    shape = nodes[INPUT].attr["shape"].shape
    if [d.size for d in shape.dim] != [1, IMAGE_SIZE, IMAGE_SIZE, 3]:
        raise RecipeError(f"unexpected input shape {[d.size for d in shape.dim]}")
    shape.dim[0].size = -1
    for node in graph_def.node:
        node.device = ""
        node.attr.pop("_output_shapes", None)
    softmax = node_def_pb2.NodeDef(name=PROBABILITIES, op="Softmax", input=[LOGITS])
    softmax.attr["T"].CopyFrom(attr_value_pb2.AttrValue(type=tf.float32.as_datatype_enum))
    graph_def.node.append(softmax)
    graph_def.versions.CopyFrom(full.versions)
    return graph_def


def build(entry: Entry, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    graph_def = imagenet_graph_def(original_graph_bytes(log))
    labels = imagenet_labels()
    out.write_bytes(graph_def.SerializeToString(deterministic=True))
    log(f"{len(graph_def.node)} nodes, {len(labels)} labels")
    return {"labels": labels}
