"""The `mtcnn` zoo entry against its original: the `mtcnn` package's own `detect_faces`.

On both runtimes: the whole graph on TensorFlow, and P/R/O-Net on LiteRT with the
pyramid and NMS in numpy (modelzoo_server.litert_mtcnn). The reference runs in this test
run (nothing stored): one `mtcnn.MTCNN()` instance, default settings, fed the same photos
as RGB; the model gets them as BGR float32.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

from modelzoo_models import run_recipes
from modelzoo_models.catalog import MTCNN
from modelzoo_server.errors import InvalidInput
from modelzoo_server.model_entry import from_catalog
from modelzoo_server.runtimes import LITERT, TENSORFLOW, Runtime, load_runtime
from modelzoo_server.signature import Signature
from tests import photos

pytestmark = pytest.mark.models

DEFAULTS = {
    "min_size": np.float32(20),
    "thresholds": np.array([0.6, 0.7, 0.8], np.float32),
    "factor": np.float32(0.709),
}
# Measured against the package on every photo here, the worst of any face (TensorFlow;
# LiteRT): IoU 0.99997; 0.99997, prob 4.8e-6; 3.5e-6, landmarks 0.0017; 0.0020 px.
# Asserted with margins that still catch a wrong scale, offset or stage.
MIN_IOU = 0.999
PROB_TOLERANCE = 1e-4
LANDMARK_TOLERANCE_PX = 0.05


@pytest.fixture(scope="module")
def record(zoo_dir) -> dict:
    catalog = json.loads((zoo_dir / "catalog.json").read_text())
    (entry,) = [m for m in catalog["models"] if m["name"] == "mtcnn"]
    return entry


@pytest.fixture(scope="module")
def graph_file(zoo_dir, record):
    (artifact,) = [a for a in record["artifacts"] if a["format"] == "graphdef"]
    return zoo_dir / artifact["file"], artifact["sha256"]


@pytest.fixture(scope="module", params=[TENSORFLOW, LITERT])
def model(request, zoo_dir) -> Runtime:
    return load_runtime(from_catalog(zoo_dir, "mtcnn"), request.param, threads=2)


@pytest.fixture(scope="module")
def package():
    from mtcnn import MTCNN

    return MTCNN()


def detect(model, rgb: np.ndarray) -> dict[str, np.ndarray]:
    bgr = np.ascontiguousarray(rgb[:, :, ::-1], dtype=np.float32)
    return model.run({"input": bgr, **DEFAULTS})


def reference(package, rgb: np.ndarray) -> dict[str, np.ndarray]:
    """detect_faces with its defaults, as floats in our layout (numpy output, not rounded)."""
    rows = package.detect_faces(np.ascontiguousarray(rgb), output_type="numpy", box_format="xyxy")
    rows = np.asarray(rows, np.float64).reshape(-1, 16)
    # rows: image, x1, y1, x2, y2, score, x of 5 points, y of 5 points
    return {
        "box": rows[:, [2, 1, 4, 3]],
        "prob": rows[:, 5],
        "landmarks": np.concatenate([rows[:, 11:16], rows[:, 6:11]], axis=1),
    }


def iou(a: np.ndarray, b: np.ndarray) -> float:
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, bottom - top) * max(0.0, right - left)
    return inter / (_area(a) + _area(b) - inter)


def _area(box: np.ndarray) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def assert_empty(out: dict[str, np.ndarray]) -> None:
    assert out["box"].shape == (0, 4)
    assert out["prob"].shape == (0,)
    assert out["landmarks"].shape == (0, 10)


@pytest.mark.parametrize("name", list(photos.PHOTOS))
def test_agrees_with_the_package(model, package, name):
    rgb = photos.PHOTOS[name]()
    ours, ref = detect(model, rgb), reference(package, rgb)
    assert {k: v.dtype for k, v in ours.items()} == dict.fromkeys(ours, np.dtype(np.float32))
    if name in photos.FACELESS:
        assert len(ref["box"]) == 0, f"the package found a face in {name}"
        assert_empty(ours)
        return
    assert len(ref["box"]) > 0, f"the package found no face in {name}"
    unmatched = list(range(len(ours["box"])))
    for k, ref_box in enumerate(ref["box"]):
        overlaps = [iou(ref_box, ours["box"][j]) for j in unmatched]
        assert overlaps, f"{name}: face {k} of the package ({ref_box}) has no match"
        best = int(np.argmax(overlaps))
        j = unmatched.pop(best)
        assert overlaps[best] >= MIN_IOU, f"{name}: face {k} matched at IoU {overlaps[best]:.3f}"
        assert abs(ours["prob"][j] - ref["prob"][k]) <= PROB_TOLERANCE
        gap = np.abs(ours["landmarks"][j] - ref["landmarks"][k]).max()
        assert gap <= LANDMARK_TOLERANCE_PX, f"{name}: landmarks of face {k} {gap:.2f} px off"
    extra = [j for j in unmatched if ours["prob"][j] > DEFAULTS["thresholds"][2]]
    assert not extra, f"{name}: faces the package does not find: {ours['box'][extra]}"
    assert np.all(np.diff(ours["prob"]) <= 0), "prob is sorted descending"
    height, width = rgb.shape[:2]
    assert np.all(ours["box"] >= 0)
    assert np.all(ours["box"][:, [0, 2]] <= height - 1) and np.all(
        ours["box"][:, [1, 3]] <= width - 1
    )


def test_exif_photo_is_upright():
    upright = photos.PHOTOS["exif_rotated"]().astype(np.int16)
    original = photos.grace_hopper().astype(np.int16)
    assert upright.shape == original.shape
    assert np.abs(upright - original).mean() < 4  # the same picture, after one JPEG round
    stored = photos.decode_rgb(photos.exif_rotated_jpeg())
    assert stored.shape == (original.shape[1], original.shape[0], 3)


@pytest.mark.parametrize("shape", [(10, 11, 3), (1, 1, 3), (11, 400, 3), (0, 0, 3)])
def test_image_too_small_gives_empty_outputs(model, shape):
    assert_empty(detect(model, np.full(shape, 128, np.uint8)))


def test_faceless_image_gives_empty_outputs(model, package):
    flat = np.full((240, 320, 3), 128, np.uint8)
    assert len(reference(package, flat)["box"]) == 0
    assert_empty(detect(model, flat))


@pytest.mark.parametrize("runtime", [TENSORFLOW, LITERT])
@pytest.mark.parametrize(
    ("min_size", "factor"), [(0.0, 0.709), (0.01, 0.999), (20.0, 0.0), (20.0, -1.0), (20.0, 1.5)]
)
def test_absurd_parameters_stay_bounded(zoo_dir, runtime, min_size, factor):
    """The model bounds its own work, even without the server's input ranges."""
    entry = from_catalog(zoo_dir, "mtcnn")
    inputs = tuple(replace(t, range=None) for t in entry.record.inputs)
    unchecked = replace(
        entry, signature=Signature.from_record(replace(entry.record, inputs=inputs))
    )
    model = load_runtime(unchecked, runtime)
    flat = np.full((48, 64, 3), 128, np.float32)
    feeds = {**DEFAULTS, "input": flat, "min_size": np.float32(min_size)}
    assert_empty(model.run({**feeds, "factor": np.float32(factor)}))


def test_the_server_refuses_absurd_parameters_before_the_graph(model):
    flat = np.full((48, 64, 3), 128, np.float32)
    with pytest.raises(InvalidInput, match="within"):
        model.run({**DEFAULTS, "input": flat, "factor": np.float32(1.5)})


def test_signature_and_layout_are_in_the_catalog(record):
    assert record["signature"] == MTCNN.record().to_json()["signature"]
    assert record["notes"]["box"] == "y1, x1, y2, x2"
    assert record["notes"]["landmarks"].split(", ")[:5] == [
        f"y_{p}" for p in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
    ]
    assert record["preprocessing"]["channels"] == "BGR"


def test_build_is_deterministic(tmp_path, graph_file):
    digests = []
    for folder in ("one", "two"):
        run_recipes.build(tmp_path / folder, ["mtcnn"], log=lambda message: None)
        digests.append(hashlib.sha256((tmp_path / folder / "mtcnn.pb").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert digests[0] == graph_file[1], "the zoo cache holds the same bytes"
