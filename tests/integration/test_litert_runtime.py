"""The LiteRT runtime on small real flatbuffers, converted by TensorFlow's own converter.

What it must refuse before an interpreter exists (custom and Flex ops, a wrong sha256,
bytes that are no TFLite model) and what it must compute (every batch size, in any order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from modelzoo_models.contract import RefusedGraph
from modelzoo_models.prepare import NotConverted, convert
from modelzoo_server.errors import InvalidInput
from modelzoo_server.litert import builtin_ops, load_tflite, read_tflite
from modelzoo_server.runtime import read_graph_def
from modelzoo_server.signature import FeedLimits, Signature
from tests.graphs import AFFINE_SIGNATURE, affine_graph

pytestmark = pytest.mark.integration

SIGNATURE = Signature.from_json(AFFINE_SIGNATURE)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("litert")


@pytest.fixture(scope="module")
def affine_tflite(folder: Path) -> Path:
    graph_def = read_graph_def(affine_graph(folder / "affine.pb"), None)
    path = folder / "affine.tflite"
    path.write_bytes(convert(graph_def, SIGNATURE))
    return path


def _log_graph() -> tf.Graph:
    """y = log(x) in float64: TFLite has no builtin kernel for it (mtcnn's failure)."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float64, [None, 4], name="x")
        tf.identity(tf.math.log(x), name="y")
    return graph


def _converted_with(folder: Path, name: str, ops: list, allow_custom_ops: bool = False) -> Path:
    """The float64 Log graph converted the ways the server must refuse."""
    graph = _log_graph()
    x, y = graph.get_tensor_by_name("x:0"), graph.get_tensor_by_name("y:0")
    converter = tf.compat.v1.lite.TFLiteConverter(graph.as_graph_def(), [x], [y])
    converter.target_spec.supported_ops = ops
    converter.allow_custom_ops = allow_custom_ops
    path = folder / f"{name}.tflite"
    path.write_bytes(converter.convert())
    return path


@pytest.mark.parametrize("batch", [1, 3, 16, 1])
def test_every_batch_size_computes_the_graph(affine_tflite: Path, batch: int) -> None:
    model = load_tflite(affine_tflite, SIGNATURE, num_threads=2)
    x = np.arange(batch * 4, dtype=np.float32).reshape(batch, 4)
    np.testing.assert_array_equal(model.run({"x": x})["y"], 2 * x + 1)


def test_one_interpreter_follows_changing_batch_sizes(affine_tflite: Path) -> None:
    model = load_tflite(affine_tflite, SIGNATURE)
    for batch in (2, 5, 2, 1, 7, 7):
        x = np.full((batch, 4), batch, np.float32)
        np.testing.assert_array_equal(model.run({"x": x})["y"], 2 * x + 1)


def test_feeds_are_validated_before_the_interpreter(affine_tflite: Path) -> None:
    model = load_tflite(affine_tflite, SIGNATURE)
    with pytest.raises(InvalidInput, match="datatype FP64"):
        model.run({"x": np.ones((1, 4), np.float64)})
    with pytest.raises(InvalidInput, match="shape"):
        model.run({"x": np.ones((1, 5), np.float32)})
    np.testing.assert_array_equal(model.run({"x": np.zeros((1, 4), np.float32)})["y"], 1)


def test_the_op_list_is_read_from_the_flatbuffer(affine_tflite: Path) -> None:
    assert set(builtin_ops(affine_tflite.read_bytes())) <= {"MUL", "ADD"}


def test_a_flex_op_is_refused(folder: Path) -> None:
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    flex = _converted_with(folder, "flex", ops)
    with pytest.raises(RefusedGraph, match=r"'FlexLog' is a Flex \(TensorFlow\) op"):
        read_tflite(flex, None)


def test_a_custom_op_is_refused(folder: Path) -> None:
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    custom = _converted_with(folder, "custom", ops, allow_custom_ops=True)
    with pytest.raises(RefusedGraph, match="'Log' is a custom op"):
        read_tflite(custom, None)


def test_what_does_not_convert_says_why() -> None:
    graph = _log_graph()
    signature = Signature.from_json(
        {
            "inputs": [{"name": "x", "dtype": "float64", "shape": [-1, 4]}],
            "outputs": [{"name": "y", "dtype": "float64", "shape": [-1, 4]}],
        }
    )
    with pytest.raises(
        NotConverted, match=r"no TFLite builtin kernel for 1 op\(s\): Log \(float64\)"
    ):
        convert(graph.as_graph_def(), signature)


def test_sha256_mismatch_is_refused(affine_tflite: Path) -> None:
    with pytest.raises(RefusedGraph, match="sha256 mismatch"):
        read_tflite(affine_tflite, "0" * 64)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a flatbuffer at all", b"\x10\x00\x00\x00TFL3" + b"\xff" * 24],
    ids=["empty", "text", "truncated"],
)
def test_bytes_that_are_no_tflite_model_are_refused(folder: Path, content: bytes) -> None:
    path = folder / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(RefusedGraph, match="TFLite flatbuffer"):
        read_tflite(path, None)


def test_a_graphdef_is_no_tflite_model(folder: Path) -> None:
    with pytest.raises(RefusedGraph, match="no TFL3 identifier"):
        read_tflite(affine_graph(folder / "other.pb"), None)


def test_a_file_over_the_cap_is_refused(affine_tflite: Path) -> None:
    with pytest.raises(RefusedGraph, match="over the cap"):
        read_tflite(affine_tflite, None, max_bytes=100)


def test_a_signature_the_model_does_not_have_is_refused(affine_tflite: Path) -> None:
    other = Signature.from_json(
        {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
            "outputs": [{"name": "z", "dtype": "float32", "shape": [-1, 4]}],
        }
    )
    with pytest.raises(RefusedGraph, match="output 'z'"):
        load_tflite(affine_tflite, other)
    fixed = Signature.from_json(
        {
            "inputs": [{"name": "x", "dtype": "float32", "shape": [2, 4]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 4]}],
        }
    )
    with pytest.raises(RefusedGraph, match="differs from the signature"):
        load_tflite(affine_tflite, fixed, feed_limits=FeedLimits())
