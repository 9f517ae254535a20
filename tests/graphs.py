"""Small GraphDefs built in the tests: a well-behaved tensor model and hostile ones."""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow as tf

AFFINE_SIGNATURE = {
    "task": "tensor",
    "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
    "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 4]}],
}


def _write(graph: tf.Graph, path: Path) -> Path:
    path.write_bytes(graph.as_graph_def().SerializeToString(deterministic=True))
    return path


def affine_graph(path: Path) -> Path:
    """y = 2x + 1 over [N, 4] float32: a tiny 'tensor' model."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(x * 2.0 + 1.0, name="y")
    return _write(graph, path)


def write_signature(path: Path, signature: dict = AFFINE_SIGNATURE) -> Path:
    path.write_text(json.dumps(signature))
    return path


def _hostile(build, path: Path) -> Path:
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        build(x)
        tf.identity(x, name="y")
    return _write(graph, path)


def hostile_graphs(folder: Path, victim: Path) -> dict[str, Path]:
    """One graph per forbidden op family; `victim` is a file the I/O ops would touch."""
    target = str(victim)

    def name():
        return tf.constant(target)

    def read_file(x):
        tf.raw_ops.ReadFile(filename=name())

    def write_file(x):
        tf.raw_ops.WriteFile(filename=name(), contents=tf.constant("pwned"))

    def matching_files(x):
        tf.raw_ops.MatchingFiles(pattern=tf.constant("/etc/*"))

    def save(x):
        tf.raw_ops.SaveV2(prefix=name(), tensor_names=["x"], shape_and_slices=[""], tensors=[x])

    def restore(x):
        tf.raw_ops.RestoreV2(
            prefix=name(), tensor_names=["x"], shape_and_slices=[""], dtypes=[tf.float32]
        )

    def py_func(x):
        tf.compat.v1.py_func(lambda v: v, [x], tf.float32)

    def immutable_const(x):
        tf.raw_ops.ImmutableConst(dtype=tf.float32, shape=[4], memory_region_name=str(victim))

    def print_v2(x):
        tf.raw_ops.PrintV2(input=tf.constant("hello from the model"))

    def debug(x):
        tf.raw_ops.DebugIdentity(input=x)

    builders = {
        "ReadFile": read_file,
        "WriteFile": write_file,
        "MatchingFiles": matching_files,
        "SaveV2": save,
        "RestoreV2": restore,
        "PyFunc": py_func,
        "ImmutableConst": immutable_const,
        "PrintV2": print_v2,
        "DebugIdentity": debug,
    }
    graphs = {op: _hostile(build, folder / f"{op}.pb") for op, build in builders.items()}
    graphs["DataServiceDatasetV4"] = _raw_node_graph(folder, "DataServiceDatasetV4")
    graphs["RpcCall"] = _raw_node_graph(folder, "RpcCall")
    graphs["WriteFile-in-function"] = _function_graph(folder / "function.pb", target)
    return graphs


def _raw_node_graph(folder: Path, op: str) -> Path:
    """A node of an op TensorFlow may not even register here: refused by name alone."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(x, name="y")
    graph_def = graph.as_graph_def()
    node = graph_def.node.add()
    node.name = "sneaky"
    node.op = op
    path = folder / f"{op}.pb"
    path.write_bytes(graph_def.SerializeToString(deterministic=True))
    return path


def _function_graph(path: Path, target: str) -> Path:
    """WriteFile hidden inside a function in the graph's library."""

    @tf.function
    def sneaky(v):
        tf.raw_ops.WriteFile(filename=target, contents=tf.constant("pwned"))
        return v

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 4], name="x")
        tf.identity(sneaky(x), name="y")
    graph_def = graph.as_graph_def()
    # The call itself looks harmless; only the function body is not.
    for node in graph_def.node:
        if node.op == "StatefulPartitionedCall":
            node.op = "PartitionedCall"
    path.write_bytes(graph_def.SerializeToString(deterministic=True))
    return path
