"""The op allowlist on hand-made GraphDefs (pure: nothing is imported into TensorFlow)."""

from __future__ import annotations

import pytest
from tensorflow.core.framework import graph_pb2

from modelzoo_models.contract import RefusedGraph
from modelzoo_models.graph_policy import ALLOWED_OPS, GraphLimits, check_graph, describe

pytestmark = pytest.mark.unit


def _graph(*ops: str, device: str = "") -> graph_pb2.GraphDef:
    graph = graph_pb2.GraphDef()
    for index, op in enumerate(ops):
        node = graph.node.add(name=f"n{index}", op=op)
        node.device = device
    return graph


@pytest.mark.parametrize(
    "op, family",
    [
        ("ReadFile", "file I/O"),
        ("WriteFile", "file I/O"),
        ("MatchingFiles", "file I/O"),
        ("TFRecordReaderV2", "file I/O"),
        ("SaveV2", "Save/Restore"),
        ("RestoreV2", "Save/Restore"),
        ("MergeV2Checkpoints", "Save/Restore"),
        ("PyFunc", "Python"),
        ("EagerPyFunc", "Python"),
        ("ImmutableConst", "maps a file"),
        ("PrintV2", "printing"),
        ("DebugIdentityV2", "printing"),
        ("DataServiceDatasetV4", "data service"),
        ("RpcCall", "RPC"),
        ("CollectiveReduceV2", "RPC"),
        ("_Send", "internal"),
        ("_Arg", "internal"),
        ("VarHandleOp", "not on the allowlist"),
        ("StatefulPartitionedCall", "not on the allowlist"),
    ],
)
def test_forbidden_ops_are_refused_naming_op_and_family(op: str, family: str) -> None:
    with pytest.raises(RefusedGraph, match=rf"op '{op}' \(.*{family}"):
        check_graph(_graph("Placeholder", op))


def test_forbidden_op_inside_a_function_is_found() -> None:
    graph = _graph("Placeholder", "PartitionedCall")
    function = graph.library.function.add()
    function.signature.name = "innocent"
    function.node_def.add(name="w", op="WriteFile")
    with pytest.raises(RefusedGraph, match="of function 'innocent'"):
        check_graph(graph)


def test_calling_a_library_function_by_name_is_allowed() -> None:
    graph = _graph("Placeholder", "helper")
    function = graph.library.function.add()
    function.signature.name = "helper"
    function.node_def.add(name="r", op="Relu")
    check_graph(graph)


@pytest.mark.parametrize("device", ["/job:worker/task:0/device:CPU:0", "/replica:0/task:1"])
def test_remote_device_placement_is_refused(device: str) -> None:
    with pytest.raises(RefusedGraph, match="pinned to device"):
        check_graph(_graph("Placeholder", device=device))


def test_local_device_strings_are_tolerated() -> None:
    check_graph(_graph("Placeholder", device="/device:CPU:0"))


def test_node_cap() -> None:
    with pytest.raises(RefusedGraph, match="more than the cap of 3"):
        check_graph(_graph(*["Relu"] * 4), GraphLimits(max_nodes=3))


def test_huge_constant_by_shape_alone_is_refused() -> None:
    graph = _graph("Const")
    tensor = graph.node[0].attr["value"].tensor
    for size in (100_000, 100_000):
        tensor.tensor_shape.dim.add(size=size)
    with pytest.raises(RefusedGraph, match="larger than"):
        check_graph(graph, GraphLimits(max_const_bytes=1 << 20))


def test_allowlist_holds_only_pure_ops() -> None:
    for op in ALLOWED_OPS:
        assert describe(op) == "not on the allowlist of pure compute ops" or op in {
            "TensorListStack",
            "TensorArrayV3",
            "TensorArrayReadV3",
            "TensorArrayWriteV3",
            "TensorArrayGatherV3",
            "TensorArrayScatterV3",
            "TensorArraySizeV3",
            "TensorArrayConcatV3",
            "TensorArraySplitV3",
        }, op


def test_forbidden_op_inside_a_while_body_is_found() -> None:
    graph = _graph("Placeholder", "StatelessWhile")
    for name, op in (("cond", "Less"), ("body", "ReadFile")):
        function = graph.library.function.add()
        function.signature.name = name
        function.node_def.add(name="n", op=op)
    while_node = graph.node[1]
    while_node.attr["cond"].func.name = "cond"
    while_node.attr["body"].func.name = "body"
    with pytest.raises(RefusedGraph, match=r"'ReadFile' \(file I/O\).* of function 'body'"):
        check_graph(graph)
