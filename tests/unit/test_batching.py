"""The batcher on a pure numpy 'model': stacking, splitting, delays and isolation of failures."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from modelzoo_server.batching import Batcher, split, stack

pytestmark = pytest.mark.unit


def test_stack_and_split_round_trip() -> None:
    requests = [{"x": np.full((n, 2), n, np.float32)} for n in (1, 3, 2)]
    batched = stack(requests)
    assert batched["x"].shape == (6, 2)
    parts = split({"y": batched["x"] * 10}, [1, 3, 2])
    for request, part in zip(requests, parts, strict=True):
        np.testing.assert_array_equal(part["y"], request["x"] * 10)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


async def test_concurrent_requests_share_batches(executor) -> None:
    calls: list[int] = []
    seen: list[tuple[int, int]] = []

    def run(feeds):
        calls.append(feeds["x"].shape[0])
        return {"y": feeds["x"] + 1}

    batcher = Batcher(
        run,
        executor,
        max_batch_size=8,
        max_delay_s=0.05,
        on_batch=lambda size, waits: seen.append((size, len(waits))),
    )
    batcher.start()
    try:
        results = await asyncio.gather(
            *(batcher.submit({"x": np.full((1, 3), i, np.float32)}) for i in range(20))
        )
    finally:
        await batcher.stop()
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], np.full((1, 3), i + 1))
    assert sum(calls) == 20
    assert max(calls) == 8 and len(calls) <= 4  # batched, never over the cap
    assert [size for size, _ in seen] == calls


async def test_a_request_larger_than_the_room_left_waits_for_the_next_batch(executor) -> None:
    calls: list[int] = []

    def run(feeds):
        calls.append(feeds["x"].shape[0])
        return {"y": feeds["x"]}

    batcher = Batcher(run, executor, max_batch_size=4, max_delay_s=0.05)
    batcher.start()
    try:
        sizes = (3, 3, 1)
        results = await asyncio.gather(
            *(batcher.submit({"x": np.zeros((n, 1), np.float32)}) for n in sizes)
        )
    finally:
        await batcher.stop()
    assert [r["y"].shape[0] for r in results] == list(sizes)
    assert all(size <= 4 for size in calls) and sum(calls) == 7


async def test_a_failing_batch_fails_its_requests_and_the_batcher_goes_on(executor) -> None:
    def run(feeds):
        if (feeds["x"] < 0).any():
            raise ValueError("negative")
        return {"y": feeds["x"]}

    batcher = Batcher(run, executor, max_batch_size=4, max_delay_s=0.0)
    batcher.start()
    try:
        with pytest.raises(ValueError, match="negative"):
            await batcher.submit({"x": -np.ones((1, 1), np.float32)})
        ok = await batcher.submit({"x": np.ones((1, 1), np.float32)})
    finally:
        await batcher.stop()
    assert ok["y"].tolist() == [[1.0]]


async def test_a_lone_request_runs_without_waiting_for_a_full_batch(executor) -> None:
    batcher = Batcher(lambda f: {"y": f["x"] * 2}, executor, max_batch_size=64, max_delay_s=0.02)
    batcher.start()
    try:
        # A generous guard against hanging, not a timing assertion.
        result = await asyncio.wait_for(
            batcher.submit({"x": np.ones((1, 1), np.float32)}), timeout=60
        )
    finally:
        await batcher.stop()
    assert result["y"].tolist() == [[2.0]]


async def test_a_batch_waits_only_while_admitted_requests_are_on_their_way(executor) -> None:
    admitted = {"n": 1}
    sizes: list[int] = []
    batcher = Batcher(
        lambda f: {"y": f["x"]},
        executor,
        max_batch_size=8,
        max_delay_s=30.0,  # far longer than the guard below: waiting would fail the test
        on_batch=lambda size, waits: sizes.append(size),
        admitted=lambda: admitted["n"],
    )
    batcher.start()
    try:
        # Alone: nobody else is admitted, so it runs without waiting out the delay.
        await asyncio.wait_for(batcher.submit({"x": np.ones((1, 1), np.float32)}), timeout=10)
        # Two admitted, the second arrives a little later: the first waits for it.
        admitted["n"] = 2
        first = asyncio.ensure_future(batcher.submit({"x": np.ones((1, 1), np.float32)}))
        await asyncio.sleep(0.05)
        second = batcher.submit({"x": np.ones((1, 1), np.float32)})
        await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
    finally:
        await batcher.stop()
    assert sizes == [1, 2]
