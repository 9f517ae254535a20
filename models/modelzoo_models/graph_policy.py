"""What a GraphDef may contain before we import it.

A GraphDef is a program: importing and running it executes whatever ops it
names. Models reach the server from URLs and volumes the operator was told
about, so every op in the graph and in its function library is checked
against an allowlist of pure compute ops BEFORE TensorFlow sees the graph.
Anything not listed (file and network I/O, Python callbacks, Save/Restore,
printing and debugging, data-service/RPC, internal `_` ops) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from modelzoo_models.contract import RefusedGraph

# Pure tensor computations that frozen vision/classification graphs use.
ALLOWED_OPS: frozenset[str] = frozenset(
    """
    Abs Acos Acosh Add AddN AddV2 All Any ArgMax ArgMin Asin Asinh Atan Atan2 Atanh AvgPool
    AvgPool3D BatchMatMul BatchMatMulV2 BatchMatMulV3 BatchToSpaceND BiasAdd Bitcast
    BitwiseAnd BitwiseOr BitwiseXor BroadcastArgs BroadcastTo Cast Ceil CheckNumerics
    ClipByValue CombinedNonMaxSuppression Complex ComplexAbs Concat ConcatV2 Const Conv2D
    Conv2DBackpropInput Conv3D Cos Cosh CropAndResize Cross Cumprod Cumsum DepthToSpace
    DepthwiseConv2dNative Diag DiagPart Dilation2D Div DivNoNan Einsum Elu EnsureShape Enter
    Equal Erf Erfc Exit Exp ExpandDims Expm1 ExtractImagePatches Fill Floor FloorDiv
    FloorMod FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 Gather GatherNd GatherV2
    Greater GreaterEqual Identity IdentityN If Imag InvertPermutation IsFinite IsInf IsNan
    L2Loss LRN LeakyRelu LeftShift Less LessEqual Lgamma LinSpace Log Log1p LogSoftmax
    LogicalAnd LogicalNot LogicalOr LoopCond MatMul MatrixBandPart MatrixDiag MatrixDiagV3
    Max MaxPool MaxPool3D MaxPoolV2 MaxPoolWithArgmax Maximum Mean Merge Min Minimum
    MirrorPad Mod Mul MulNoNan Neg NextIteration NoOp NonMaxSuppression NonMaxSuppressionV2
    NonMaxSuppressionV3 NonMaxSuppressionV4 NonMaxSuppressionV5
    NonMaxSuppressionWithOverlaps NotEqual OneHot OnesLike Pack Pad PadV2 PartitionedCall
    Placeholder PlaceholderWithDefault Pow Prod Range Rank Real RealDiv Reciprocal Relu
    Relu6 Reshape ResizeArea ResizeBicubic ResizeBilinear ResizeNearestNeighbor Reverse
    ReverseV2 RightShift Rint Round Rsqrt ScatterNd Select SelectV2 Selu Shape ShapeN
    Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToBatchND SpaceToDepth
    Split SplitV Sqrt Square SquaredDifference Squeeze StatelessIf StatelessWhile
    StopGradient StridedSlice Sub Sum Switch Tan Tanh TensorArrayConcatV3
    TensorArrayGatherV3 TensorArrayReadV3 TensorArrayScatterV3 TensorArraySizeV3
    TensorArraySplitV3 TensorArrayV3 TensorArrayWriteV3 TensorListConcatV2
    TensorListElementShape TensorListFromTensor TensorListGetItem TensorListLength
    TensorListReserve TensorListResize TensorListSetItem TensorListStack TensorScatterAdd
    TensorScatterUpdate Tile TopKV2 Transpose TruncateDiv TruncateMod Unique Unpack
    UnsortedSegmentMax UnsortedSegmentSum Where While ZerosLike
    """.split()  # noqa: SIM905 - a word list reads better than 200 quoted lines
)

# Families named in error messages, so a refusal says why, not just "not allowed".
_FAMILIES: tuple[tuple[str, str], ...] = (
    (r"^_", "internal op (names starting with '_' are TensorFlow internals)"),
    (r"(ReadFile|WriteFile|MatchingFiles|FileSystem|Reader|Writer|Record)", "file I/O"),
    (r"^(Save|Restore|MergeV2Checkpoints|ShardedFilename)", "checkpoint Save/Restore"),
    (r"(PyFunc|EagerPyFunc|PyCall)", "calls back into Python"),
    (r"^ImmutableConst", "maps a file into memory"),
    (r"^(Print|Debug|Summary|Write.*Summary|ScalarSummary|Histogram)", "printing or debugging"),
    (
        r"(DataService|Rpc|Collective|Send|Recv|Distributed|Register)",
        "network, RPC or data service",
    ),
    (r"(Variable|Assign|Resource|Stack|Queue|Barrier|Iterator|Dataset)", "state or I/O pipeline"),
)

_LOCAL_DEVICE = re.compile(r"^(/device:)?(CPU|GPU):\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class GraphLimits:
    max_nodes: int = 200_000
    max_const_bytes: int = 1 << 30


def describe(op: str) -> str:
    for pattern, family in _FAMILIES:
        if re.search(pattern, op):
            return family
    return "not on the allowlist of pure compute ops"


def _const_bytes(node) -> int:
    value = node.attr["value"].tensor
    count = 1
    for dim in value.tensor_shape.dim:
        count *= max(dim.size, 0)
    # Eight bytes is the widest numeric element; strings are measured by content.
    return max(count * 8, len(value.tensor_content), sum(len(s) for s in value.string_val))


def _check_nodes(nodes: Iterable, where: str, allowed: set[str], limits: GraphLimits) -> None:
    for node in nodes:
        op = node.op
        if op not in ALLOWED_OPS and op not in allowed:
            raise RefusedGraph(f"op {op!r} ({describe(op)}) in node {node.name!r}{where}")
        if node.device and not _LOCAL_DEVICE.match(node.device):
            raise RefusedGraph(f"node {node.name!r}{where} is pinned to device {node.device!r}")
        if op == "Const" and _const_bytes(node) > limits.max_const_bytes:
            raise RefusedGraph(
                f"constant {node.name!r}{where} is larger than {limits.max_const_bytes} bytes"
            )


def check_graph(
    graph_def, limits: GraphLimits = GraphLimits(), also_allowed: frozenset[str] = frozenset()
) -> None:
    """Raise RefusedGraph unless every op of the graph and its functions is allowed.

    `also_allowed`: ops a caller permits beyond the allowlist (a SavedModel's variable
    plumbing, checked before it is frozen away)."""
    allowed = {f.signature.name for f in graph_def.library.function} | also_allowed
    total = len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)
    if total > limits.max_nodes:
        raise RefusedGraph(f"graph has {total} nodes, more than the cap of {limits.max_nodes}")
    _check_nodes(graph_def.node, "", allowed, limits)
    for function in graph_def.library.function:
        _check_nodes(
            function.node_def, f" of function {function.signature.name!r}", allowed, limits
        )
    if graph_def.library.gradient:
        raise RefusedGraph("graph defines gradient functions, which a frozen graph never needs")
