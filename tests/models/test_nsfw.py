"""`nsfw`: nsfwjs's MobileNetV2, rebuilt in Keras and frozen, against the original in Node.

The reference is the original TF.js layers model as nsfwjs itself loads it
(`nsfwjs.load("MobileNetV2")`), run by pure-JS `@tensorflow/tfjs` on its cpu backend
(`models/reference/run_layers_model.js`); its outputs come from that run, never from
stored files. Both sides use the same dequantized float32 weights, so what differs is
float32 round-off: TF.js's plain JS loops against oneDNN's kernels (another summation
order), batch-norm arithmetic written differently, over ~60 layers. That measured
about 1e-6 on these softmax outputs; ATOL = 1e-4 leaves two orders of magnitude for
other CPUs and kernels and is still far below what a wrong layer, weight or padding
does (≥ 1e-2).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from modelzoo_models import run_recipes
from modelzoo_models.contract import ModelRecord, Preprocessing, RecordError, sha256_file
from modelzoo_models.npm_sources import node_modules
from modelzoo_models.recipes import nsfw
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.runtime import read_graph_def
from modelzoo_server.tasks.image_classification import (
    ImageClassification,
)
from modelzoo_server.tasks.resize import resize_bilinear
from tests import photos

pytestmark = pytest.mark.models
ZOO_ENTRY = "nsfw"

ATOL = 1e-4
SCRIPT = (
    Path(__file__).resolve().parents[2]
    / "models"
    / "modelzoo_models"
    / "reference"
    / "run_layers_model.js"
)
PHOTOS = ("grace_hopper", "coffee", "chelsea")
NEUTRAL = ("grace_hopper", "coffee")


def run_reference(tensor: np.ndarray, images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """nsfwjs in Node: `tensor` through its model, each image through its own pipeline."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the nsfwjs reference runs in Node.js")
    with tempfile.TemporaryDirectory(prefix="nsfwjs-ref-") as tmp:
        exchange = Path(tmp)
        tensor.astype("<f4").tofile(exchange / "tensor.bin")
        runs = [
            {
                "kind": "tensor",
                "input": "tensor.bin",
                "shape": list(tensor.shape),
                "output": "tensor.out",
            }
        ]
        for name, image in images.items():
            np.ascontiguousarray(image, dtype=np.uint8).tofile(exchange / f"{name}.bin")
            runs.append(
                {
                    "kind": "image",
                    "input": f"{name}.bin",
                    "shape": list(image.shape),
                    "output": f"{name}.out",
                }
            )
        request = {"model": "nsfwjs:MobileNetV2", "runs": runs}
        (exchange / "request.json").write_text(json.dumps(request))
        done = subprocess.run(
            [node, str(SCRIPT), str(node_modules()), str(exchange / "request.json")],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        assert answer["backend"] == "cpu"
        outputs = {"tensor": np.fromfile(exchange / "tensor.out", "<f4").reshape(-1, 5)}
        for name in images:
            outputs[name] = np.fromfile(exchange / f"{name}.out", "<f4").reshape(5)
        return outputs


@pytest.fixture(scope="module")
def feeds(task: ImageClassification) -> np.ndarray:
    options = task.options({})
    return np.concatenate(
        [task.preprocess(getattr(photos, name)(), options)["input"] for name in PHOTOS]
    )


@pytest.fixture(scope="module")
def reference(feeds: np.ndarray) -> dict[str, np.ndarray]:
    return run_reference(feeds, {name: getattr(photos, name)() for name in NEUTRAL})


def test_catalog_record(entry: ModelEntry) -> None:
    assert entry.task == "image-classification"
    assert entry.batchable
    assert entry.labels == ("Drawing", "Hentai", "Neutral", "Porn", "Sexy")
    assert [(s.name, s.shape) for s in entry.signature.inputs] == [("input", (-1, 224, 224, 3))]
    assert [(s.name, s.shape) for s in entry.signature.outputs] == [("probabilities", (-1, 5))]
    assert entry.preprocessing == Preprocessing(
        size=(224, 224), channels="RGB", resize="bilinear-align-corners", scale=1 / 255
    )
    assert entry.info["origin"]["package"] == "nsfwjs"
    assert entry.info["origin"]["version"] == "4.4.0"


def test_graph_is_frozen_and_pure(entry: ModelEntry) -> None:
    graph_def = read_graph_def(entry.path, entry.sha256)  # passes the op allowlist
    ops = {node.op for node in graph_def.node}
    assert not ops & {"VarHandleOp", "ReadVariableOp", "VariableV2", "PartitionedCall"}
    (placeholder,) = (n for n in graph_def.node if n.op == "Placeholder")
    assert placeholder.name == "input"
    assert [d.size for d in placeholder.attr["shape"].shape.dim] == [-1, 224, 224, 3]


def test_raw_outputs_agree_with_tfjs(model, feeds: np.ndarray, reference) -> None:
    ours = model.run({"input": feeds})["probabilities"]
    assert ours.shape == reference["tensor"].shape == (len(PHOTOS), 5)
    assert np.abs(ours - reference["tensor"]).max() <= ATOL
    np.testing.assert_array_equal(ours.argmax(-1), reference["tensor"].argmax(-1))


def test_served_pipeline_matches_nsfwjs(task: ImageClassification, model, reference) -> None:
    """Our preprocessing (PIL-free align-corners resize, /255) + graph vs nsfwjs.infer."""
    for name in NEUTRAL:
        image = getattr(photos, name)()
        options = task.options({"top_k": "5"})
        outputs = model.run(task.preprocess(image, options))
        result = task.postprocess(outputs, (image.shape[1], image.shape[0]), options)
        top = result["predictions"][0]
        assert top["label"] == "Neutral", (name, result)
        assert top["class_id"] == int(reference[name].argmax()), name
        # Same resize formula in float32 on both sides: only round-off differs.
        assert np.abs(outputs["probabilities"][0] - reference[name]).max() <= ATOL, name


def test_batch_of_sixteen_matches_single_runs(model, feeds: np.ndarray) -> None:
    batch = np.concatenate([feeds] * 6)[:16]
    together = model.run({"input": batch})["probabilities"]
    for i in range(len(feeds)):
        alone = model.run({"input": batch[i : i + 1]})["probabilities"][0]
        assert np.abs(together[i] - alone).max() <= 1e-5


def test_dequantization_is_tfjs_formula() -> None:
    manifest = {
        "weightsManifest": [
            {
                "paths": ["s"],
                "weights": [
                    {
                        "name": "q",
                        "shape": [2, 2],
                        "dtype": "float32",
                        "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
                    },
                    {"name": "f", "shape": [2], "dtype": "float32"},
                ],
            }
        ]
    }
    data = bytes([0, 1, 2, 255]) + np.array([1.5, -2.0], "<f4").tobytes()
    weights = nsfw.dequantize(manifest, {"s": data})
    np.testing.assert_array_equal(weights["q"], [[-1.0, -0.5], [0.0, 126.5]])
    np.testing.assert_array_equal(weights["f"], [1.5, -2.0])
    assert weights["q"].dtype == np.float32


@pytest.mark.parametrize("size", [(224, 224), (37, 501), (600, 512), (1, 1)])
def test_align_corners_resize_is_tensorflows(size: tuple[int, int]) -> None:
    import tensorflow as tf

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(*size, 3)).astype(np.float32)
    ours = resize_bilinear(pixels, 224, 224, align_corners=True)
    theirs = tf.compat.v1.image.resize_bilinear(pixels[None], [224, 224], align_corners=True)
    # TF computes source positions in float32 (TF.js and we, in float64): a position
    # off by a few ulps, ~(in size) * 2^-22 pixels, on random pixels (steps up to 255).
    # A wrong mapping (half-pixel centres, no align-corners) is off by tens.
    atol = 255 * max(size) * 2.0**-22
    np.testing.assert_allclose(ours, theirs.numpy()[0], rtol=0, atol=atol)


def _entry(**preprocessing) -> ModelEntry:
    record = ModelRecord.from_json(
        {
            "name": "fake",
            "task": "image-classification",
            "signature": {
                "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 48, 32, -1]}],
                "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 3]}],
            },
            "preprocessing": preprocessing,
            "labels": ["a", "b", "c"],
        }
    )
    return ModelEntry.of(record, Path("/nonexistent"), "fake", None)


def test_gray_preprocessing_for_one_channel_models() -> None:
    task = ImageClassification(
        _entry(size=[48, 32], channels="GRAY", resize="bilinear", scale=2 / 255, offset=-1.0)
    )
    image = np.zeros((100, 60, 3), np.uint8)
    image[..., 0] = 255  # pure red: luma 0.299 * 255 ≈ 76
    feed = task.preprocess(image, task.options({}))["input"]
    assert feed.shape == (1, 48, 32, 1)
    assert feed.dtype == np.float32
    np.testing.assert_allclose(feed, 76 * 2 / 255 - 1.0, atol=1e-6)
    result = task.postprocess(
        {"probabilities": np.array([[0.1, 0.7, 0.2]], np.float32)}, (60, 100), task.options({})
    )
    assert [p["label"] for p in result["predictions"]] == ["b", "c", "a"]


@pytest.mark.parametrize(
    "bad",
    [
        {"channels": "CMYK"},
        {"resize": "lanczos"},
        {"size": [0, 10]},
        {"size": None},
        {"range": [0, 255]},
    ],
)
def test_bad_preprocessing_is_refused_at_load(bad: dict) -> None:
    fields = {"size": [48, 32], "channels": "RGB", "resize": "bilinear", **bad}
    with pytest.raises(RecordError):
        ImageClassification(_entry(**fields))


def test_build_is_deterministic(entry: ModelEntry, tmp_path: Path) -> None:
    digests = []
    for folder in ("one", "two"):
        run_recipes.build(tmp_path / folder, ["nsfw"], log=lambda _m: None)
        digests.append(sha256_file(tmp_path / folder / "nsfw.pb"))
    assert digests[0] == digests[1] == entry.sha256
