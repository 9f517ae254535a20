"""Every zoo `.tflite` against its TensorFlow graph, on the test photos.

The reference is the built graph run by TensorFlow, which the other model tests check
against the originals (the shipped graphs, TF.js, the `mtcnn` package). The `.tflite`
(run by LiteRT as the server runs it) must stay within the tolerance its catalog entry
states and the prepare step recorded, and give the same top classes and the same boxes.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from modelzoo_models.catalog import ENTRIES
from modelzoo_models.contract import (
    IMAGE_CLASSIFICATION,
    MTCNN_NETS,
    TFLITE,
    Artifact,
    RefusedGraph,
    sha256_file,
)
from modelzoo_models.prepare import convert
from modelzoo_models.recipes import mtcnn as mtcnn_recipe
from modelzoo_server.litert import builtin_ops
from modelzoo_server.litert_mtcnn import LiteMtcnn
from modelzoo_server.model_entry import ModelEntry, from_catalog
from modelzoo_server.runtime import read_graph_def
from modelzoo_server.runtimes import LITERT, TENSORFLOW, Runtime, load_runtime
from modelzoo_server.signature import FeedLimits
from modelzoo_server.tasks import TASKS, Task
from tests import photos
from tests.models.test_mtcnn_graph import detect as mtcnn_detect
from tests.models.test_mtcnn_graph import iou

pytestmark = pytest.mark.models

CONVERTED = ("mobilenet", "nsfw", "centernet", "emotion")
PHOTOS = ("astronaut", "coffee", "chelsea", "grace_hopper")


class Pair:
    """One zoo entry on both runtimes."""

    def __init__(self, entry: ModelEntry) -> None:
        self.entry = entry
        tflite = entry.record.artifact(TFLITE)
        assert tflite is not None and tflite.verified is not None, entry.record.notes
        self.tflite: Artifact = tflite
        self.tolerance = tflite.verified.tolerance
        self.task: Task = TASKS[entry.task](entry)
        self.graph: Runtime = load_runtime(entry, TENSORFLOW)
        self.lite: Runtime = load_runtime(entry, LITERT, threads=2)

    def feeds(self, photo: str) -> dict[str, np.ndarray]:
        return self.task.preprocess(photos.PHOTOS[photo](), self.task.options({}))

    def result(self, outputs: dict[str, np.ndarray], photo: str) -> dict:
        height, width = photos.PHOTOS[photo]().shape[:2]
        return self.task.postprocess(outputs, (width, height), self.task.options({}))


@pytest.fixture(scope="module", params=CONVERTED)
def pair(request: pytest.FixtureRequest, zoo_dir: Path) -> Iterator[Pair]:
    yield Pair(from_catalog(zoo_dir, request.param))


def _assert_close(expected: dict, actual: dict, tolerance: float) -> None:
    for name, value in expected.items():
        np.testing.assert_allclose(
            actual[name], value, rtol=0, atol=tolerance, equal_nan=True, err_msg=name
        )


def test_the_record_carries_the_verification(pair: Pair) -> None:
    path = pair.entry.path.parent / pair.tflite.file
    assert sha256_file(path) == pair.tflite.sha256
    assert pair.tolerance == ENTRIES[pair.entry.record.name].tflite_tolerance
    assert 0 <= pair.tflite.verified.max_abs_diff <= pair.tolerance
    assert builtin_ops(path.read_bytes())  # builtin ops only, or it raises


@pytest.mark.parametrize("photo", PHOTOS)
def test_litert_agrees_with_tensorflow_on_photos(pair: Pair, photo: str) -> None:
    feeds = pair.feeds(photo)
    expected, actual = pair.graph.run(feeds), pair.lite.run(feeds)
    _assert_close(expected, actual, pair.tolerance)
    ours, theirs = pair.result(actual, photo), pair.result(expected, photo)
    if pair.entry.task == IMAGE_CLASSIFICATION:
        assert ours["predictions"][0]["label"] == theirs["predictions"][0]["label"]
        return
    # Boxes come back in the photo's pixels, rounded to 0.01: the model's tolerance in
    # its input's pixels, scaled to the photo's, plus that rounding.
    assert [d["label"] for d in ours["detections"]] == [d["label"] for d in theirs["detections"]]
    assert theirs["detections"], f"no detection on {photo}: nothing compared"
    scale = max(photos.PHOTOS[photo]().shape[:2]) / min(pair.task.height, pair.task.width)
    for mine, reference in zip(ours["detections"], theirs["detections"], strict=True):
        np.testing.assert_allclose(
            mine["box"], reference["box"], atol=pair.tolerance * scale + 0.01
        )


# centernet takes one image per call (its graph hard-codes batch 1).
@pytest.mark.parametrize("pair", [n for n in CONVERTED if ENTRIES[n].batchable], indirect=True)
def test_a_batch_agrees_with_single_runs(pair: Pair) -> None:
    singles = [pair.feeds(photo) for photo in PHOTOS]
    batch = {name: np.concatenate([f[name] for f in singles]) for name in singles[0]}
    together = pair.lite.run(batch)
    for i, feeds in enumerate(singles):
        alone = pair.lite.run(feeds)
        _assert_close(alone, {k: v[i : i + 1] for k, v in together.items()}, pair.tolerance)


def test_conversion_is_deterministic(pair: Pair) -> None:
    """The zoo build is cached by its inputs: converting again gives the catalog's bytes."""
    graph_def = read_graph_def(pair.entry.path, pair.entry.sha256)
    again = convert(graph_def, pair.entry.signature)
    assert hashlib.sha256(again).hexdigest() == pair.tflite.sha256


# The bounds for LiteRT against TensorFlow on every test photo, any face.
MTCNN_MIN_IOU = 0.999
MTCNN_LANDMARKS_PX = 0.05


@pytest.fixture(scope="module")
def mtcnn(zoo_dir: Path) -> tuple[Artifact, Runtime, Runtime]:
    entry = from_catalog(zoo_dir, "mtcnn")
    tflite = entry.record.artifact(TFLITE)
    assert tflite is not None and tflite.verified is not None, entry.record.notes
    return tflite, load_runtime(entry, TENSORFLOW), load_runtime(entry, LITERT, threads=2)


def test_mtcnn_runs_its_three_networks_on_litert(zoo_dir: Path, mtcnn) -> None:
    tflite, _, _ = mtcnn
    assert tflite.pipeline == MTCNN_NETS
    assert tflite.verified.tolerance == ENTRIES["mtcnn"].tflite_tolerance
    assert 0 <= tflite.verified.max_abs_diff <= tflite.verified.tolerance
    assert "thresholds" in tflite.verified.inputs  # the loose pass that reaches ONet
    data = (zoo_dir / tflite.file).read_bytes()
    assert sha256_file(zoo_dir / tflite.file) == tflite.sha256
    assert {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(builtin_ops(data))


@pytest.mark.parametrize("photo", list(photos.PHOTOS))
def test_mtcnn_on_litert_agrees_with_tensorflow(mtcnn, photo: str) -> None:
    tflite, graph, lite = mtcnn
    rgb = photos.PHOTOS[photo]()
    expected, actual = mtcnn_detect(graph, rgb), mtcnn_detect(lite, rgb)
    assert len(actual["box"]) == len(expected["box"])
    for box, reference in zip(actual["box"], expected["box"], strict=True):
        assert iou(box, reference) >= MTCNN_MIN_IOU
    gap = np.abs(actual["landmarks"] - expected["landmarks"]).max(initial=0.0)
    assert gap <= MTCNN_LANDMARKS_PX
    np.testing.assert_allclose(actual["prob"], expected["prob"], atol=tflite.verified.tolerance)


def test_the_mtcnn_pipeline_refuses_a_flatbuffer_without_its_networks(zoo_dir: Path) -> None:
    entry = from_catalog(zoo_dir, "mtcnn")
    other = from_catalog(zoo_dir, "emotion")
    tflite = other.record.artifact(TFLITE)
    assert tflite is not None
    data = (zoo_dir / tflite.file).read_bytes()
    with pytest.raises(RefusedGraph, match=r"tflite signatures \[.*\], expected \['onet'"):
        LiteMtcnn(data, entry.signature, FeedLimits(), num_threads=1)


def test_a_pool_of_mtcnn_pipelines_answers_as_one_pipeline(zoo_dir: Path) -> None:
    """Calls at once on a pool (two 1-thread pipelines, a 2-thread one for a lone call)
    give one 1-thread pipeline's answers to the bit: measured so, whichever pipeline and
    thread count ran, so no tolerance hides a pipeline that mixed up its tensors."""
    entry = from_catalog(zoo_dir, "mtcnn")
    tflite = entry.record.artifact(TFLITE)
    assert tflite is not None
    data = (zoo_dir / tflite.file).read_bytes()
    one = LiteMtcnn(data, entry.signature, FeedLimits(), num_threads=1)
    pool = LiteMtcnn(data, entry.signature, FeedLimits(), 1, interpreters=2, lone_threads=2)
    rgb = {name: load() for name, load in photos.PHOTOS.items()}
    names = list(rgb)
    start = threading.Barrier(3, timeout=60)

    def calls(offset: int) -> list[tuple[str, dict[str, np.ndarray]]]:
        start.wait()  # every thread's calls start together
        order = names[offset:] + names[:offset]
        return [(name, mtcnn_detect(pool, rgb[name])) for name in order]

    with ThreadPoolExecutor(3) as threads:
        answers = [answer for some in threads.map(calls, range(3)) for answer in some]
    used = [nets for nets in pool._pool.members if nets._pnets]  # PNet caches fill when run
    assert len(used) >= 2, "the calls never overlapped"
    expected = {name: mtcnn_detect(one, image) for name, image in rgb.items()}
    for name, answer in answers:
        assert answer.keys() == expected[name].keys()
        for key, value in answer.items():
            np.testing.assert_array_equal(value, expected[name][key], err_msg=f"{name} {key}")


def test_mtcnn_networks_convert_deterministically(mtcnn) -> None:
    tflite, _, _ = mtcnn
    again = mtcnn_recipe._nets_tflite(
        {name: mtcnn_recipe._load_weights(name) for name in ("pnet", "rnet", "onet")}
    )
    assert hashlib.sha256(again).hexdigest() == tflite.sha256


def _prepare_cli(zoo_dir: Path, name: str, out: Path) -> subprocess.CompletedProcess:
    """`modelzoo-prepare` on a built graph, with its catalog record as the signature file."""
    script = Path(sys.executable).parent / "modelzoo-prepare"
    graph, record = zoo_dir / f"{name}.pb", zoo_dir / f"{name}.meta.json"
    return subprocess.run(
        [str(script), "--graph", str(graph), "--signature", str(record), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_cli_writes_what_the_zoo_build_wrote(zoo_dir: Path, tmp_path: Path) -> None:
    done = _prepare_cli(zoo_dir, "emotion", tmp_path / "emotion.tflite")
    assert done.returncode == 0, done.stderr[-2000:]
    artifact = json.loads(done.stdout)
    built = from_catalog(zoo_dir, "emotion").record.artifact(TFLITE)
    assert built is not None
    assert artifact["sha256"] == built.sha256 == sha256_file(tmp_path / "emotion.tflite")
    assert artifact["verified"]["max_abs_diff"] <= artifact["verified"]["tolerance"]


def test_the_cli_says_why_a_graph_does_not_convert(zoo_dir: Path, tmp_path: Path) -> None:
    done = _prepare_cli(zoo_dir, "mtcnn", tmp_path / "mtcnn.tflite")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("modelzoo-prepare: not converted: no TFLite builtin kernel for"), last
    assert not (tmp_path / "mtcnn.tflite").exists()
