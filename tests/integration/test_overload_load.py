"""A bounded load far past capacity: only 200s and 429s with Retry-After, health stays
responsive, memory stays flat. Bounded in time and count, loopback only."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from tests import photos
from tests.servers import run_server

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("MODELZOO_OVERLOAD_SECONDS", "8"))  # `make soak` raises it
CONCURRENCY = 16  # 4× the admission limit below
MAX_INFLIGHT = 4
HEALTH_BOUND_S = 2.0  # a liveness bound (the loop is not blocked), not a performance target


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _load(url: str) -> tuple[Counter, list[str], float, int]:
    body = photos.encode_jpeg(photos.astronaut())
    statuses: Counter = Counter()
    missing_retry_after: list[str] = []
    health_worst = 0.0
    requests_sent = 0
    deadline = time.monotonic() + SECONDS
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            nonlocal requests_sent
            while time.monotonic() < deadline:
                requests_sent += 1
                async with session.post(
                    f"{url}/infer", data=body, headers={"Content-Type": "image/jpeg"}
                ) as response:
                    await response.read()
                    statuses[response.status] += 1
                    if response.status in (429, 503) and "Retry-After" not in response.headers:
                        missing_retry_after.append(str(response.status))
                    if response.status == 429:
                        await asyncio.sleep(0.01)  # a polite client; still 4× over capacity

        async def prober() -> None:
            nonlocal health_worst
            while time.monotonic() < deadline:
                started = time.monotonic()
                async with session.get(f"{url}/v2/health/live") as response:
                    assert response.status == 200
                health_worst = max(health_worst, time.monotonic() - started)
                await asyncio.sleep(0.1)

        await asyncio.gather(prober(), *(worker() for _ in range(CONCURRENCY)))
    return statuses, missing_retry_after, health_worst, requests_sent


def test_overload_answers_429_and_stays_responsive(zoo_dir: Path, tmp_path: Path) -> None:
    args = ["--zoo", "mtcnn", "--model-dir", str(zoo_dir), "--max-inflight", str(MAX_INFLIGHT)]
    with run_server(args, tmp_path / "server.log") as server:
        asyncio.run(_load(server.url))  # warm-up round: pools and caches reach steady state
        before = _rss_kib(server.process.pid)
        statuses, missing, health_worst, sent = asyncio.run(_load(server.url))
        after = _rss_kib(server.process.pid)
    print(
        f"overload: {sent} requests, statuses {dict(statuses)}, "
        f"worst health {health_worst * 1000:.0f} ms, RSS {before} → {after} KiB"
    )
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] > 0 and statuses[429] > 0
    assert not missing
    assert health_worst < HEALTH_BOUND_S
    assert (after - before) / before < 0.10, (before, after)
