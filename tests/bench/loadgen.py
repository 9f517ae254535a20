"""Closed-loop load: `concurrency` clients, a fixed request count, a time cap.

Each client sends its next request as soon as its previous one is answered, so
`concurrency` requests are always in flight. Every latency is one request's, from
sending to the last byte of the answer. HTTP goes through one aiohttp session on
loopback (keep-alive, at most `concurrency` connections); in-process work goes
through a pool of `concurrency` threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import aiohttp


@dataclass(frozen=True)
class HttpRequest:
    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Load:
    """What one closed-loop run did."""

    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    capped: bool = False
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""

    def merge(self, other: Load) -> None:
        """Add another slice of the same cell."""
        self.completed += other.completed
        self.errors += other.errors
        self.seconds += other.seconds
        self.capped = self.capped or other.capped
        self.latencies.extend(other.latencies)
        self.first_error = self.first_error or other.first_error


async def _http(
    base_url: str,
    requests: Sequence[HttpRequest],
    concurrency: int,
    total: int,
    cap_s: float,
    warmup: int,
) -> Load:
    load = Load()
    timeout = aiohttp.ClientTimeout(total=max(120.0, cap_s * 2))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def send(index: int) -> tuple[bool, str]:
            request = requests[index % len(requests)]
            try:
                async with session.post(
                    request.path, data=request.body, headers=request.headers
                ) as response:
                    body = await response.read()
                    if response.status == 200:
                        return True, ""
                    return False, f"HTTP {response.status}: {body[:200]!r}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                return False, f"{type(exc).__name__}: {exc}"

        # Warm-up: open the connections and let the server settle; not counted.
        await asyncio.gather(*(send(i) for i in range(warmup)))

        issued = 0
        started = time.perf_counter()
        deadline = started + cap_s

        async def client() -> None:
            nonlocal issued
            while issued < total:
                if time.perf_counter() >= deadline:
                    load.capped = True
                    return
                index = issued
                issued += 1
                sent = time.perf_counter()
                ok, error = await send(index)
                if ok:
                    load.latencies.append(time.perf_counter() - sent)
                    load.completed += 1
                else:
                    load.errors += 1
                    load.first_error = load.first_error or error

        await asyncio.gather(*(client() for _ in range(concurrency)))
        load.seconds = time.perf_counter() - started
    return load


def drive_http(
    base_url: str,
    requests: Sequence[HttpRequest],
    concurrency: int,
    total: int,
    cap_s: float,
    warmup: int | None = None,
) -> Load:
    """Send `total` requests (cycling through `requests`) from `concurrency` clients."""
    warm = concurrency if warmup is None else warmup
    return asyncio.run(_http(base_url, requests, concurrency, total, cap_s, warm))


def drive_threads(
    work: Callable[[int], None], concurrency: int, total: int, cap_s: float, warmup: int = 1
) -> Load:
    """Call `work(index)` `total` times from `concurrency` threads, closed loop."""
    load = Load()
    for index in range(warmup):
        work(index)
    lock = threading.Lock()
    issued = 0
    started = time.perf_counter()
    deadline = started + cap_s

    def client() -> None:
        nonlocal issued
        while True:
            with lock:
                if issued >= total:
                    return
                if time.perf_counter() >= deadline:
                    load.capped = True
                    return
                index = issued
                issued += 1
            sent = time.perf_counter()
            try:
                work(index)
            except Exception as exc:  # counted and reported, the run goes on
                with lock:
                    load.errors += 1
                    load.first_error = load.first_error or f"{type(exc).__name__}: {exc}"
                continue
            elapsed = time.perf_counter() - sent
            with lock:
                load.latencies.append(elapsed)
                load.completed += 1

    with ThreadPoolExecutor(concurrency, thread_name_prefix="bench-client") as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    load.seconds = time.perf_counter() - started
    return load
