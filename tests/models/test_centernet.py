"""The `centernet` zoo entry against the original TF.js model run in Node (pure-JS tfjs, cpu).

Tolerances (TF 2.21 CPU vs tfjs-backend-cpu, both float32, different summation orders):
- `keypoints` (sigmoid heat map, 0..1): max abs diff <= 1e-4 (seen: ~5e-7);
- `wh` and the box columns of `detections` are pixel distances on the 512×512 input,
  values in the hundreds, where one float32 ulp is ~3e-5 and a conv chain accumulates
  a few dozen: max abs diff <= 5e-3 px, i.e. 1e-5 of the input size (seen: ~1e-3);
- scores <= 1e-4; class ids and the decoded labels exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from modelzoo_server.errors import InvalidInput
from modelzoo_server.runtime import load_graph
from modelzoo_server.tasks.resize import resize_bilinear
from tests import photos
from tests.models.tfjs_reference import run_tfjs

pytestmark = pytest.mark.models
ZOO_ENTRY = "centernet"

HEADS = ("tower_0/detections", "tower_0/keypoints", "tower_0/wh")
PHOTOS = ("astronaut", "coffee", "chelsea")
KEYPOINT_ATOL = 1e-4
PIXEL_ATOL = 5e-3
SCORE_ATOL = 1e-4


@pytest.fixture(scope="module")
def heads(entry):
    """The served graph, with the raw heads exposed beside `detections`."""
    (images,) = entry.signature.inputs
    signature = {
        "inputs": [
            {
                "name": "images",
                "dtype": "float32",
                "shape": list(images.shape),
                "tensor": images.tensor,
            }
        ],
        "outputs": [
            {"name": name, "dtype": "float32", "shape": [], "tensor": f"{name}:0"} for name in HEADS
        ],
    }
    return load_graph(entry.path, signature, entry.sha256)


@pytest.fixture(scope="module")
def model_json():
    from modelzoo_models.catalog import ENTRIES
    from modelzoo_models.recipes import tfjs_graph

    origin = ENTRIES["centernet"].origin
    return tfjs_graph.npm_package(origin) / origin["weights"]


@pytest.fixture(scope="module")
def feeds(task):
    """The task's own preprocessing of each photo: the one tensor both runtimes get."""
    options = task.options({})
    return {name: task.preprocess(photos.PHOTOS[name](), options)["images"] for name in PHOTOS}


@pytest.fixture(scope="module")
def reference(model_json, feeds):
    """The original model.json + shards in TF.js (about 14 s a photo in pure JS)."""
    runs = run_tfjs(model_json, [{"tower_0/images": feeds[n]} for n in PHOTOS], HEADS)
    return dict(zip(PHOTOS, runs, strict=True))


@pytest.fixture(scope="module")
def ours(heads, feeds):
    return {name: heads.run({"images": feeds[name]}) for name in PHOTOS}


def _size(name: str) -> tuple[int, int]:
    height, width = photos.PHOTOS[name]().shape[:2]
    return width, height


def test_catalog_record(entry):
    assert entry.task == "object-detection"
    assert len(entry.labels) == 80
    assert (entry.labels[0], entry.labels[41], entry.labels[79]) == ("person", "cup", "toothbrush")
    assert [s.tensor for s in entry.signature.inputs] == ["tower_0/images:0"]
    assert entry.signature.inputs[0].shape == (1, 512, 512, 3)
    assert entry.batchable is False  # the graph's BatchGather hard-codes batch 1


@pytest.mark.parametrize("name", PHOTOS)
def test_raw_heads_agree_with_tfjs(name, ours, reference):
    got, want = ours[name], reference[name].outputs
    keypoints = np.abs(got["tower_0/keypoints"] - want["tower_0/keypoints"]).max()
    wh = np.abs(got["tower_0/wh"] - want["tower_0/wh"]).max()
    assert keypoints <= KEYPOINT_ATOL, f"keypoints differ by {keypoints}"
    assert wh <= PIXEL_ATOL, f"wh differs by {wh} px"
    # TopK rows: compare the confident ones, which have no near-ties to reorder.
    mine, theirs = got["tower_0/detections"][0], want["tower_0/detections"][0]
    confident = theirs[:, 4] > 0.1
    np.testing.assert_array_equal(mine[confident, 5], theirs[confident, 5])
    np.testing.assert_allclose(mine[confident, 4], theirs[confident, 4], atol=SCORE_ATOL, rtol=0)
    np.testing.assert_allclose(mine[confident, :4], theirs[confident, :4], atol=PIXEL_ATOL, rtol=0)
    np.testing.assert_allclose(np.sort(mine[:, 4]), np.sort(theirs[:, 4]), atol=SCORE_ATOL, rtol=0)


@pytest.mark.parametrize("name", PHOTOS)
def test_decoded_detections_match_the_reference(name, task, ours, reference):
    options = task.options({})
    size = _size(name)
    got = task.postprocess({"detections": ours[name]["tower_0/detections"]}, size, options)
    want = task.postprocess(
        {"detections": reference[name].outputs["tower_0/detections"]}, size, options
    )
    assert [d["label"] for d in got["detections"]] == [d["label"] for d in want["detections"]]
    for mine, theirs in zip(got["detections"], want["detections"], strict=True):
        assert mine["class_id"] == theirs["class_id"]
        assert abs(mine["score"] - theirs["score"]) <= SCORE_ATOL
        # back in original pixels: the input tolerance times the resize factor, plus rounding
        scale = max(size) / 512
        np.testing.assert_allclose(mine["box"], theirs["box"], atol=PIXEL_ATOL * scale + 0.01)


def test_photos_show_what_they_show(task, ours, reference):
    options = task.options({})
    found = {
        name: task.postprocess(
            {"detections": ours[name]["tower_0/detections"]}, _size(name), options
        )["detections"]
        for name in PHOTOS
    }
    astronaut = found["astronaut"][0]
    assert astronaut["label"] == "person" and astronaut["score"] > 0.5
    x1, y1, x2, y2 = astronaut["box"]
    assert x1 < 100 and y1 < 100 and x2 > 300 and y2 > 450  # her, not a corner of the photo
    assert "cup" in [d["label"] for d in found["coffee"]]
    # chelsea: the animal the original model calls her, with the same box
    theirs = task.postprocess(
        {"detections": reference["chelsea"].outputs["tower_0/detections"]},
        _size("chelsea"),
        options,
    )["detections"]
    # (this CenterNet calls the tabby a "dog", 0.48: so does TF.js; the point is agreement)
    assert theirs and found["chelsea"][0]["label"] == theirs[0]["label"]
    assert theirs[0]["label"] in {"cat", "dog"}
    np.testing.assert_allclose(found["chelsea"][0]["box"], theirs[0]["box"], atol=0.05)


def test_preprocess_resize_is_tfjs_resize_bilinear(tmp_path):
    """Our numpy resize is TF.js's resizeBilinear kernel bit for bit, down- and upsampling."""
    model = {
        "format": "graph-model",
        "modelTopology": {
            "node": [
                {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
                {
                    "name": "size",
                    "op": "Const",
                    "attr": {
                        "dtype": {"type": "DT_INT32"},
                        "value": {
                            "tensor": {"dtype": "DT_INT32", "tensorShape": {"dim": [{"size": "2"}]}}
                        },
                    },
                },
                {
                    "name": "y",
                    "op": "ResizeBilinear",
                    "input": ["x", "size"],
                    "attr": {"align_corners": {"b": False}, "half_pixel_centers": {"b": False}},
                },
            ],
            "versions": {},
        },
        "weightsManifest": [
            {"paths": ["w.bin"], "weights": [{"name": "size", "shape": [2], "dtype": "int32"}]}
        ],
    }
    rng = np.random.default_rng(3)
    runs, want = [], []
    for (in_h, in_w), (out_h, out_w) in (((37, 53), (16, 24)), ((9, 7), (31, 40))):
        folder = tmp_path / f"{out_h}x{out_w}"
        folder.mkdir()
        (folder / "w.bin").write_bytes(np.array([out_h, out_w], "<i4").tobytes())
        (folder / "model.json").write_text(json.dumps(model))
        image = rng.integers(0, 256, size=(in_h, in_w, 3), dtype=np.uint8)
        runs.append((folder / "model.json", image.astype(np.float32)[None]))
        want.append(resize_bilinear(image, out_h, out_w))
    for (model_json, image), expected in zip(runs, want, strict=True):
        (result,) = run_tfjs(model_json, [{"x": image}], ["y"])
        np.testing.assert_array_equal(result.outputs["y"][0], expected)  # same doubles


def test_non_max_suppression_follows_tfjs_rules(task):
    options = task.options({"score_threshold": "0.3", "iou_threshold": "0.5"})
    rows = np.array(
        [
            [0, 0, 100, 100, 0.9, 0],  # kept
            [0, 0, 100, 90, 0.8, 0],  # IoU 0.9 with the first: suppressed
            [200, 200, 300, 300, 0.7, 2],  # kept
            [200, 200, 300, 300, 0.3, 2],  # not above the threshold
            [400, 400, 500, 500, 0.6, np.nan],  # no class: dropped after NMS
            [0, 0, 100, 50, 0.85, 1],  # IoU exactly 0.5 with the first: suppressed (>=)
        ],
        np.float32,
    )[None]
    result = task.postprocess({"detections": rows}, (1024, 512), options)
    assert [(d["label"], d["score"]) for d in result["detections"]] == [
        ("person", 0.9),
        ("car", 0.7),
    ]
    assert result["detections"][0]["box"] == [0, 0, 200, 100]  # x scaled by 2, y by 1
    capped = task.postprocess(
        {"detections": rows}, (512, 512), task.options({"max_detections": "1"})
    )
    assert len(capped["detections"]) == 1


def test_options_are_checked(task):
    assert task.options({}).score_threshold == 0.2 and task.options({}).max_detections == 100
    for bad in ({"score_threshold": "1.5"}, {"max_detections": "0"}, {"max_detections": "2.5"}):
        with pytest.raises(InvalidInput):
            task.options(bad)


def test_draw_marks_the_boxes(task):
    image = Image.new("RGB", (300, 200), (255, 255, 255))
    result = {
        "detections": [{"box": [50, 60, 150, 160], "score": 0.9, "label": "cup", "class_id": 41}]
    }
    drawn = np.asarray(task.draw(image, result))
    assert drawn.shape == (200, 300, 3)
    assert (drawn[110, 50] != 255).any() and (drawn[110, 100] == 255).all()
