"""The LiteRT runtime on small real flatbuffers, converted by TensorFlow's own converter.

What it must refuse before an interpreter exists (custom and Flex ops, a wrong sha256,
bytes that are no TFLite model) and what it must compute (every batch size, in any order);
and the interpreter pool, on a zoo `.tflite`: concurrent calls on distinct interpreters,
a lone call on the lone call's interpreter while the others wait for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from modelzoo_models.contract import RefusedGraph
from modelzoo_models.prepare import NotConverted, convert
from modelzoo_server import litert
from modelzoo_server.errors import InvalidInput
from modelzoo_server.litert import LiteModel, builtin_ops, load_tflite, read_tflite
from modelzoo_server.model_entry import from_catalog
from modelzoo_server.runtime import read_graph_def
from modelzoo_server.runtimes import LITERT, load_runtime
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


# -- the interpreter pool, on a zoo entry --------------------------------------------------------


def _emotion(zoo_dir: Path, interpreters: int, lone_threads: int = 0) -> LiteModel:
    entry = from_catalog(zoo_dir, "emotion")
    model = load_runtime(entry, LITERT, interpreters=interpreters, lone_threads=lone_threads)
    assert isinstance(model, LiteModel)
    return model


def _until(condition: Callable[[], bool]) -> None:
    """Wait for another thread to get somewhere (a minute at most: a hang fails the test)."""
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, "never got there"
        time.sleep(0.001)


def _faces(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [{"input": rng.random((1, 64, 64, 1), dtype=np.float32)} for _ in range(count)]


def test_concurrent_calls_run_on_distinct_interpreters(zoo_dir: Path, monkeypatch) -> None:
    count = 3
    model = _emotion(zoo_dir, count)
    feeds = _faces(count)
    alone = [model.run(feed) for feed in feeds]
    seen: list[int] = []
    barrier = threading.Barrier(count, timeout=60)  # broken unless all calls are in at once
    run = litert._Interpreter.run

    def run_together(self: litert._Interpreter, values: list[np.ndarray]) -> list[np.ndarray]:
        seen.append(id(self))
        barrier.wait()
        return run(self, values)

    monkeypatch.setattr(litert._Interpreter, "run", run_together)
    with ThreadPoolExecutor(count) as pool:
        together = list(pool.map(model.run, feeds))
    assert len(set(seen)) == count
    assert set(seen) == {id(i) for i in model.interpreters}
    for mine, reference in zip(together, alone, strict=True):
        assert mine.keys() == reference.keys()
        for name in mine:
            np.testing.assert_array_equal(mine[name], reference[name])


def test_a_lone_call_gets_the_lone_interpreter_and_company_the_pool(
    zoo_dir: Path, monkeypatch
) -> None:
    model = _emotion(zoo_dir, 2, lone_threads=2)
    assert model.lone is not None
    feeds = _faces(3)
    seen: list[int] = []
    release = threading.Event()
    pair = threading.Barrier(2, timeout=60)  # broken unless both pool calls are in at once
    together = [True]  # the concurrent part: the lone call held, the pool's paired
    run = litert._Interpreter.run

    def watched(self: litert._Interpreter, values: list[np.ndarray]) -> list[np.ndarray]:
        seen.append(id(self))
        if together[0] and self is model.lone:
            release.wait(60)
        elif together[0]:
            pair.wait()
        return run(self, values)

    monkeypatch.setattr(litert._Interpreter, "run", watched)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(model.run, feeds[0])
        _until(lambda: len(seen) == 1)
        rest = [pool.submit(model.run, feed) for feed in feeds[1:]]
        _until(lambda: model._pool.waiting == 2)
        assert len(seen) == 1, "the pool ran beside the lone call's interpreter"
        release.set()
        answers = [first.result(), *(f.result() for f in rest)]
    together[0] = False
    assert seen[0] == id(model.lone)
    assert sorted(seen[1:]) == sorted(id(i) for i in model.interpreters)
    for feed in feeds:  # one after another: each alone, each on the lone call's interpreter
        model.run(feed)
    assert seen[3:] == [id(model.lone)] * 3
    for answer, feed in zip(answers, feeds, strict=True):
        np.testing.assert_allclose(
            answer["probabilities"], model.run(feed)["probabilities"], rtol=1e-5, atol=1e-6
        )


def test_warm_up_plans_every_interpreter(zoo_dir: Path) -> None:
    model = _emotion(zoo_dir, 2, lone_threads=2)
    everyone = [*model.interpreters, model.lone]
    assert [i.shapes for i in everyone] == [None] * 3
    model.warm_up(_faces(1)[0])
    assert [i.shapes for i in everyone] == [((1, 64, 64, 1),)] * 3
    model.run(_faces(1)[0])  # and the pool still hands them out
