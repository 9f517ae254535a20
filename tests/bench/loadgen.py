"""Closed-loop load: `concurrency` clients, a fixed request count, a time cap.

Each client sends its next request as soon as its previous one is answered, so
`concurrency` requests are always in flight. Every latency is one request's, from
sending to the last byte of the answer; an answer that fails its request's check is an
error. HTTP goes through one aiohttp session on loopback (keep-alive, at most
`concurrency` connections); gRPC has its own module (grpc_load.py) on the same
`closed_loop`; in-process work goes through a pool of `concurrency` threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import aiohttp

from tests.bench.answers import WrongAnswer


@dataclass(frozen=True)
class HttpRequest:
    path: str
    body: bytes
    headers: dict[str, str]
    # Raises WrongAnswer unless the 200 answer (body, headers) is right; None: any 200 is.
    check: Callable[[bytes, Mapping[str, str]], None] | None = None


@dataclass
class Load:
    """What one closed-loop run did."""

    completed: int = 0
    errors: int = 0
    seconds: float = 0.0
    capped: bool = False
    latencies: list[float] = field(default_factory=list)
    first_error: str = ""
    # This process's CPU time over `seconds` (every thread's): for a served cell, what the
    # load generator itself took of the machine.
    cpu_seconds: float = 0.0

    def merge(self, other: Load) -> None:
        """Add another slice of the same cell."""
        self.completed += other.completed
        self.errors += other.errors
        self.seconds += other.seconds
        self.cpu_seconds += other.cpu_seconds
        self.capped = self.capped or other.capped
        self.latencies.extend(other.latencies)
        self.first_error = self.first_error or other.first_error


async def closed_loop(
    send: Callable[[int], Awaitable[float]],
    concurrency: int,
    total: int,
    cap_s: float,
    warmup: int,
) -> Load:
    """`send(index)` sends request `index`, checks its answer and returns its latency;
    it raises for a failed or wrong answer, which counts as an error, not a latency."""
    load = Load()
    # Warm-up: open the connections and let the server settle; not counted.
    await asyncio.gather(*(send(i) for i in range(warmup)), return_exceptions=True)

    issued = 0
    started, cpu = time.perf_counter(), time.process_time()
    deadline = started + cap_s

    async def client() -> None:
        nonlocal issued
        while issued < total:
            if time.perf_counter() >= deadline:
                load.capped = True
                return
            index = issued
            issued += 1
            try:
                latency = await send(index)
            except Exception as exc:  # counted and reported, the run goes on
                load.errors += 1
                load.first_error = load.first_error or f"{type(exc).__name__}: {exc}"
                continue
            load.latencies.append(latency)
            load.completed += 1

    await asyncio.gather(*(client() for _ in range(concurrency)))
    load.seconds = time.perf_counter() - started
    load.cpu_seconds = time.process_time() - cpu
    return load


async def _http(
    base_url: str,
    requests: Sequence[HttpRequest],
    concurrency: int,
    total: int,
    cap_s: float,
    warmup: int,
) -> Load:
    timeout = aiohttp.ClientTimeout(total=max(120.0, cap_s * 2))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as session:

        async def send(index: int) -> float:
            request = requests[index % len(requests)]
            sent = time.perf_counter()
            async with session.post(
                request.path, data=request.body, headers=request.headers
            ) as response:
                body = await response.read()
            latency = time.perf_counter() - sent
            if response.status != 200:
                raise WrongAnswer(f"HTTP {response.status}: {body[:200]!r}")
            if request.check is not None:  # after the clock: the server's time, not ours
                request.check(body, response.headers)
            return latency

        return await closed_loop(send, concurrency, total, cap_s, warmup)


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
    started, cpu = time.perf_counter(), time.process_time()
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
    load.cpu_seconds = time.process_time() - cpu
    return load
