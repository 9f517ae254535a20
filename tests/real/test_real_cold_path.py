"""The benchmark's cold-path measurement (tests/bench/real_node.py) runs on the real tier's
cluster once per runtime, so `make bench` never finds it broken. Nothing here asserts a
time: the figures must only add up."""

from __future__ import annotations

import pytest

from tests.bench.real_node import ENTRIES, measure_on

pytestmark = pytest.mark.real
RUNTIMES = {"mobilenet": "litert", "mtcnn": "tensorflow"}


def test_the_cold_path_is_measured_and_accounted_for(real_cluster, chart):
    results = measure_on(real_cluster, runs=1)
    assert [r.entry for r in results] == list(ENTRIES)
    for result in results:
        assert result.runtime == RUNTIMES[result.entry], result
        assert all(seconds >= 0 for seconds in result.parts.values()), result.parts
        # Up to the server's ready line, the parts follow one another without a gap: they
        # add up to no more than the time until the first answer.
        server_ready = sum(list(result.parts.values())[:5])
        assert 0 < server_ready <= result.first_answer_s, result
        print(f"{result.entry}: {result}")
