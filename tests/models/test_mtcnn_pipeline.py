"""The numpy MTCNN pipeline (modelzoo_server.mtcnn_pipeline) against the zoo graph.

Both run the same P/R/O-Net arithmetic (the recipe's `_Net` ops on the package's weights,
here through `tf.function`), so any difference beyond the networks' own rounding is the
pipeline's: the faces must be the same ones, to within a hair. ResizeArea and
CropAndResize are also compared with TensorFlow's kernels on their own.

The pipeline's ResizeArea sums in another order than TensorFlow's kernel (matrix
products), so the pyramid differs by float32 rounding. Measured on every case below, the
worst of any face: IoU 1 - 1.3e-5, prob 3.0e-6, landmarks 0.0008 px (with the kernel's
own summation order it was 1 - 4.5e-6, 6.6e-7 and 0.0003 px); asserted with a margin of
3 or more.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from modelzoo_models.recipes import mtcnn as recipe
from modelzoo_server import mtcnn_pipeline as pipeline
from modelzoo_server.runtime import load_graph
from tests import photos
from tests.models.test_mtcnn_graph import DEFAULTS, iou

pytestmark = pytest.mark.models

ZOO_ENTRY = "mtcnn"

MIN_IOU = 0.99995
PROB_TOLERANCE = 1e-5
LANDMARK_TOLERANCE_PX = 0.004
# ResizeArea on values in [-1, 1]: measured 3.0e-7 at most over 200 random cases.
RESIZE_TOLERANCE = 2e-6
# CropAndResize: the kernel's arithmetic, measured bit-equal.
CROP_TOLERANCE = 1e-6
CONSTANTS = (
    "_PNET_CELL",
    "_PNET_STRIDE",
    "_PNET_MIN_SIDE",
    "_NMS_PNET_SCALE",
    "_NMS_PNET_ALL",
    "_NMS_RNET",
    "_NMS_ONET",
    "_NMS_CHUNK",
    "_MIN_FACE",
    "_MAX_LEVELS",
)


class TfNets:
    """pipeline.Nets on the recipe's own network ops; refuses an empty batch."""

    def __init__(self) -> None:
        import tensorflow as tf

        nets = {k: recipe._Net(tf, k, recipe._load_weights(k)) for k in ("pnet", "rnet", "onet")}

        def compiled(fn, shape):
            return tf.function(fn, input_signature=[tf.TensorSpec(shape, tf.float32)])

        self._pnet = compiled(nets["pnet"].pnet, [1, None, None, 3])
        self._rnet = compiled(nets["rnet"].rnet, [None, 24, 24, 3])
        self._onet = compiled(nets["onet"].onet, [None, 48, 48, 3])

    def pnet(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert image.dtype == np.float32 and image.shape[0] == 1 and image.shape[3] == 3
        return tuple(t.numpy() for t in self._pnet(image))

    def rnet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert crops.dtype == np.float32 and crops.shape[0] > 0, crops.shape
        return tuple(t.numpy() for t in self._rnet(crops))

    def onet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert crops.dtype == np.float32 and crops.shape[0] > 0, crops.shape
        return tuple(t.numpy() for t in self._onet(crops))


@pytest.fixture(scope="module")
def nets() -> TfNets:
    return TfNets()


@pytest.fixture(scope="module")
def unchecked(entry):
    """The graph without the server's input ranges, for parameters the server refuses."""
    signature = {
        side: [{k: v for k, v in spec.items() if k != "range"} for spec in specs]
        for side, specs in entry.record.to_json()["signature"].items()
    }
    return load_graph(entry.path, signature, entry.sha256)


def run_both(graph, nets, bgr: np.ndarray, **params) -> tuple[dict, dict]:
    feeds = {**DEFAULTS, **params}
    ours = pipeline.detect(
        nets, bgr, float(feeds["min_size"]), feeds["thresholds"], float(feeds["factor"])
    )
    return ours, graph.run({"input": bgr, **feeds})


def compare(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Assert that the faces are the same; return the worst gaps (IoU as 1 - IoU)."""
    assert set(ours) == {"box", "prob", "landmarks"}
    n = len(ref["box"])
    for key, width in (("box", (4,)), ("prob", ()), ("landmarks", (10,))):
        assert ours[key].dtype == np.float32, key
        assert ours[key].shape[1:] == width, key
    assert len(ours["box"]) == n, f"{len(ours['box'])} faces, the graph finds {n}"
    assert np.all(np.diff(ours["prob"]) <= 0), "prob is sorted descending"
    worst = {"1-iou": 0.0, "prob": 0.0, "landmarks_px": 0.0}
    unmatched = list(range(n))
    for k in range(n):
        overlaps = [iou(ref["box"][k], ours["box"][j]) for j in unmatched]
        best = int(np.argmax(overlaps))
        j = unmatched.pop(best)
        worst["1-iou"] = max(worst["1-iou"], 1.0 - float(overlaps[best]))
        worst["prob"] = max(worst["prob"], abs(float(ours["prob"][j] - ref["prob"][k])))
        gap = float(np.abs(ours["landmarks"][j] - ref["landmarks"][k]).max())
        worst["landmarks_px"] = max(worst["landmarks_px"], gap)
    assert worst["1-iou"] <= 1.0 - MIN_IOU, worst
    assert worst["prob"] <= PROB_TOLERANCE, worst
    assert worst["landmarks_px"] <= LANDMARK_TOLERANCE_PX, worst
    return worst


def bgr_of(name: str) -> np.ndarray:
    return np.ascontiguousarray(photos.PHOTOS[name]()[:, :, ::-1], dtype=np.float32)


@pytest.mark.parametrize("name", list(photos.PHOTOS))
def test_photo_matches_the_graph(model, nets, name):
    ours, ref = run_both(model, nets, bgr_of(name))
    compare(ours, ref)
    if name not in photos.FACELESS:
        assert len(ours["box"]) > 0


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("astronaut", {"min_size": np.float32(40), "factor": np.float32(0.5)}),
        ("composite", {"min_size": np.float32(40), "factor": np.float32(0.5)}),
        ("composite", {"thresholds": np.array([0.5, 0.6, 0.7], np.float32)}),
        ("grace_hopper", {"thresholds": np.array([0.5, 0.6, 0.7], np.float32)}),
        # Levels under 11 px: skipped by both.
        ("grace_hopper", {"min_size": np.float32(150)}),
    ],
)
def test_parameters_match_the_graph(model, nets, name, params):
    compare(*run_both(model, nets, bgr_of(name), **params))


@pytest.mark.parametrize("shape", [(10, 11, 3), (1, 1, 3), (0, 0, 3), (11, 400, 3)])
def test_tiny_image_gives_empty_outputs(model, nets, shape):
    ours, ref = run_both(model, nets, np.full(shape, 128, np.float32))
    compare(ours, ref)
    assert ours["box"].shape == (0, 4)
    assert ours["prob"].shape == (0,)
    assert ours["landmarks"].shape == (0, 10)


@pytest.mark.parametrize(
    ("min_size", "factor"), [(0.0, 0.709), (0.01, 0.999), (20.0, 0.0), (20.0, -1.0), (20.0, 1.5)]
)
def test_absurd_parameters_match_the_graph(unchecked, nets, min_size, factor):
    small = np.ascontiguousarray(bgr_of("astronaut")[::8, ::8])  # 64 × 64: levels up to 4×
    params = {"min_size": np.float32(min_size), "factor": np.float32(factor)}
    compare(*run_both(unchecked, nets, small, **params))


def test_resize_area_is_tensorflows():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for _ in range(40):
        in_h, in_w = rng.integers(1, 300, 2)
        out_h, out_w = rng.integers(1, 400, 2) if rng.random() < 0.3 else rng.integers(1, 120, 2)
        image = rng.uniform(-1, 1, (in_h, in_w, 3)).astype(np.float32)
        ours = pipeline._resize_area(image, int(out_h), int(out_w))
        ref = tf.raw_ops.ResizeArea(images=image[None], size=[out_h, out_w], align_corners=False)
        assert ours.dtype == np.float32
        assert np.abs(ours - ref.numpy()[0]).max() <= RESIZE_TOLERANCE, (in_h, in_w, out_h, out_w)


def test_resize_area_levels_of_a_photo_are_tensorflows():
    """The pyramid's own sizes on a large image (many blocks per axis), and an upscale."""
    import tensorflow as tf

    image = pipeline._normalize(bgr_of("composite"))
    height, width = image.shape[:2]
    _, heights, widths = pipeline._pyramid(height, width, np.float32(8), np.float32(0.709))
    for out_h, out_w in [*zip(heights[:4], widths[:4], strict=True), (heights[-1], widths[-1])]:
        ours = pipeline._resize_area(image, int(out_h), int(out_w))
        ref = tf.raw_ops.ResizeArea(images=image[None], size=[out_h, out_w], align_corners=False)
        assert np.abs(ours - ref.numpy()[0]).max() <= RESIZE_TOLERANCE, (out_h, out_w)


def test_normalize_is_the_graphs():
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 255, (37, 53, 3)).astype(np.float32)
    ref = (image[:, :, ::-1] - np.float32(127.5)) / np.float32(128.0)
    np.testing.assert_array_equal(pipeline._normalize(image), ref)


def test_crop_and_resize_is_tensorflows():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    for _ in range(20):
        height, width = rng.integers(1, 200, 2)
        image = rng.uniform(-1, 1, (height, width, 3)).astype(np.float32)
        # Partly or wholly outside the image, and flipped (y2 < y1 or x2 < x1).
        boxes = rng.uniform(-0.5, 1.5, (64, 4)).astype(np.float32)
        for size in (2, 24, 48):
            ours = pipeline._crop_and_resize(image, boxes, size)
            ref = tf.image.crop_and_resize(image[None], boxes, np.zeros(64, np.int32), [size] * 2)
            assert ours.dtype == np.float32
            assert np.abs(ours - ref.numpy()).max() <= CROP_TOLERANCE, (height, width, size)


@pytest.mark.parametrize("method", ["union", "min"])
def test_nms_is_the_graphs(method):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    for n in (0, 1, 2, 7, 600, 1500):
        # Coarse coordinates: ties, touching and repeated boxes; some flipped or empty.
        corner = rng.integers(0, 60, (n, 2)).astype(np.float64)
        size = rng.integers(-2, 25, (n, 2)).astype(np.float64)
        boxes = np.concatenate([corner, corner + size], axis=1)
        for threshold in (0.5, 0.7):
            ours = pipeline._nms_keep(boxes, threshold, method)
            ref = recipe._nms_keep(tf, tf.constant(boxes), threshold, method).numpy()
            np.testing.assert_array_equal(ours, ref)


def test_argsort_is_the_graphs():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    for n in (0, 1, 5, 300):
        scores = rng.integers(0, 8, n).astype(np.float32) / 8  # many ties
        ref = recipe._argsort_desc(tf, tf.constant(scores)).numpy()
        np.testing.assert_array_equal(pipeline._argsort_desc(scores), ref)


@pytest.mark.parametrize("size", [(0, 0), (1, 1), (11, 400), (13, 12), (480, 640), (2000, 900)])
@pytest.mark.parametrize(
    ("min_size", "factor"),
    [
        (20.0, 0.709),
        (40.0, 0.5),
        (200.0, 0.9),
        (0.0, 0.709),
        (0.01, 0.999),
        (20.0, 0.0),
        (20.0, -1.0),
        (20.0, 1.0),
        (20.0, 1.5),
        (float("nan"), 0.709),
        (20.0, float("nan")),
    ],
)
def test_pyramid_is_the_graphs(size, min_size, factor):
    import tensorflow as tf

    height, width = size
    min_size, factor = np.float32(min_size), np.float32(factor)
    ours = pipeline._pyramid(height, width, min_size, factor)
    ref = recipe._pyramid(tf, *tf.unstack(tf.constant(size, tf.float64)), min_size, factor)
    np.testing.assert_allclose(ours[0], ref[0].numpy(), rtol=1e-15)
    np.testing.assert_array_equal(ours[1], ref[1].numpy())
    np.testing.assert_array_equal(ours[2], ref[2].numpy())


def test_constants_are_the_recipes():
    for name in CONSTANTS:
        assert getattr(pipeline, name) == getattr(recipe, name), name


def test_the_pipeline_does_not_load_tensorflow():
    code = "import sys, modelzoo_server.mtcnn_pipeline; print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "tensorflow" not in loaded
