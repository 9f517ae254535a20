"""The `emotion` zoo entry against the original TF.js model run in Node (pure-JS tfjs, cpu).

Tolerance: softmax probabilities, max abs diff <= 1e-4 (float32 in both runtimes,
different summation orders; seen: ~1e-7).
"""

from __future__ import annotations

import numpy as np
import pytest

from modelzoo_server.tasks.resize import resize_bilinear
from tests import photos
from tests.models.tfjs_reference import run_tfjs

pytestmark = pytest.mark.models
ZOO_ENTRY = "emotion"

PROBABILITY_ATOL = 1e-4
# Tight face crops (x1, y1, x2, y2), like the face boxes human hands the model.
FACES = {
    "astronaut": (photos.astronaut, (165, 40, 285, 180)),
    "grace_hopper": (photos.grace_hopper, (150, 90, 370, 350)),
}


def _crop(name: str) -> np.ndarray:
    source, (x1, y1, x2, y2) = FACES[name]
    return np.ascontiguousarray(source()[y1:y2, x1:x2])


@pytest.fixture(scope="module")
def feeds(task):
    """The generic classifier's preprocessing from the catalog fields: [1, 64, 64, 1]."""
    return {name: task.preprocess(_crop(name), task.options({}))["input"] for name in FACES}


@pytest.fixture(scope="module")
def reference(feeds):
    from modelzoo_models.catalog import ENTRIES
    from modelzoo_models.recipes import tfjs_graph

    origin = ENTRIES["emotion"].origin
    model_json = tfjs_graph.npm_package(origin) / origin["weights"]
    runs = [{"input_1": feeds[name]} for name in FACES]
    runs.append({"input_1": np.concatenate([feeds[name] for name in FACES])})
    results = run_tfjs(model_json, runs, ["Identity"])
    return {
        **{name: r.outputs["Identity"] for name, r in zip(FACES, results, strict=False)},
        "batch": results[-1].outputs["Identity"],
    }


def test_catalog_record(entry):
    assert entry.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert entry.signature.inputs[0].shape == (-1, 64, 64, 1)
    assert entry.batchable
    assert entry.preprocessing.channels == "GRAY"


@pytest.mark.parametrize("name", FACES)
def test_agrees_with_tfjs(name, model, feeds, reference):
    got = model.run({"input": feeds[name]})["probabilities"]
    assert got.shape == (1, 7)
    diff = np.abs(got - reference[name]).max()
    assert diff <= PROBABILITY_ATOL, f"{name}: probabilities differ by {diff}"


def test_batch_of_two_is_two_single_runs(model, feeds, reference):
    stacked = np.concatenate([feeds[name] for name in FACES])
    got = model.run({"input": stacked})["probabilities"]
    singles = np.concatenate([model.run({"input": feeds[name]})["probabilities"] for name in FACES])
    np.testing.assert_allclose(got, singles, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got, reference["batch"], atol=PROBABILITY_ATOL, rtol=0)


def test_faces_read_as_the_reference_reads_them(task, model, feeds, reference):
    options = task.options({})
    for name in FACES:
        ours = task.postprocess(model.run({"input": feeds[name]}), (64, 64), options)
        theirs = task.postprocess({"probabilities": reference[name]}, (64, 64), options)
        assert ours["predictions"][0]["label"] == theirs["predictions"][0]["label"]
    smile = task.postprocess(model.run({"input": feeds["astronaut"]}), (64, 64), options)
    assert smile["predictions"][0]["label"] == "happy"


def test_catalog_preprocessing_stands_in_for_humans(model, feeds):
    """human: TF.js resizeBilinear of the 0..1 crop, 0.2989/0.587/0.114 luma, (g - 0.5) * 2.

    The catalog's generic fields (PIL luma first, then TF.js's resize) are close, not
    equal: a clear smile reads the same; Grace Hopper's face is a near-tie between
    fear and anger under human's pipeline (0.40 / 0.39), so only the top two must agree.
    """
    for name in FACES:
        crop = resize_bilinear(_crop(name), 64, 64).astype(np.float64) / 255
        gray = crop @ np.array([0.2989, 0.5870, 0.1140])
        humans = ((gray - 0.5) * 2).astype(np.float32)[None, ..., None]
        theirs = model.run({"input": humans})["probabilities"][0]
        ours = model.run({"input": feeds[name]})["probabilities"][0]
        assert np.argmax(ours) in np.argsort(-theirs)[:2], name
        if name == "astronaut":
            assert np.argmax(ours) == np.argmax(theirs) and np.abs(ours - theirs).max() < 0.05
