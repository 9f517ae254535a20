"""The graph runtime on a small real graph, imported into real TensorFlow."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from modelzoo_server.runtime import load_graph
from tests.graphs import AFFINE_SIGNATURE, affine_graph

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def affine(tmp_path_factory):
    path = affine_graph(tmp_path_factory.mktemp("graph") / "affine.pb")
    return load_graph(Path(path), AFFINE_SIGNATURE)


@pytest.mark.parametrize("batch", [1, 3, 16])
def test_every_batch_size_computes_the_graph(affine, batch: int) -> None:
    x = np.arange(batch * 4, dtype=np.float32).reshape(batch, 4)
    np.testing.assert_array_equal(affine.run({"x": x})["y"], 2 * x + 1)


def test_a_call_binds_its_inputs_without_a_failed_first_try(affine) -> None:
    """TensorFlow calls a pruned function without an input signature by first trying a
    structured bind, which raises a TypeError whose message formats every input, and then
    falling back: about 1 ms per call thrown away. Trace one call and see no TypeError."""
    x = np.ones((2, 4), np.float32)
    affine.run({"x": x})  # the first call may trace; the steady state is what counts
    raised: list[str] = []

    def tracer(frame, event, arg):
        if event == "exception" and issubclass(arg[0], TypeError):
            raised.append(f"{frame.f_code.co_filename}:{frame.f_lineno}: {arg[1]}"[:300])
        return tracer

    sys.settrace(tracer)
    try:
        result = affine.run({"x": x})
    finally:
        sys.settrace(None)
    np.testing.assert_array_equal(result["y"], 2 * x + 1)
    assert raised == []
