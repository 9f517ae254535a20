"""Dynamic batching: requests that arrive within `max_delay` run as one graph call.

Only for models whose every input has a free leading (batch) dimension. The
queue is bounded by the model's admission limit (`max_inflight`), so it can
never grow without bound; each request's wait is measured as queue time.
A batch waits for company only while other admitted requests are still on
their way (decoding): a lone request runs at once, with no added delay.
Each request's wait is a `queue` span under the request's span; each batch is a `batch`
span linked to the span of every request it served (tracing.batch_span).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, Tracer

from modelzoo_server import tracing

Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


@dataclass
class _Pending:
    feeds: Feeds
    rows: int
    future: asyncio.Future
    request: SpanContext  # the submitting request's span, which its batch links to
    queue: Span  # ended when its batch starts
    queued_at: float = field(default_factory=time.perf_counter)
    # Set when its batch starts: the wait and the batch's rows, for `on_answered`.
    waited: float = 0.0
    batch_rows: int = 0


def stack(requests: list[Feeds]) -> dict[str, np.ndarray]:
    """Concatenate each input along the batch axis (one copy, straight into the batch)."""
    if len(requests) == 1:
        return dict(requests[0])
    return {name: np.concatenate([r[name] for r in requests]) for name in requests[0]}


def split(outputs: Outputs, rows: list[int]) -> list[Outputs]:
    """Cut batched outputs back into per-request outputs (views, no copies)."""
    bounds = np.cumsum([0, *rows])
    return [
        {name: value[bounds[i] : bounds[i + 1]] for name, value in outputs.items()}
        for i in range(len(rows))
    ]


class Batcher:
    def __init__(
        self,
        run: Callable[[Feeds], Outputs],
        executor: Executor,
        max_batch_size: int,
        max_delay_s: float,
        on_batch: Callable[[int, list[tuple[float, SpanContext]]], None] = lambda size, waits: None,
        admitted: Callable[[], int] | None = None,
        on_answered: Callable[[float, int], None] = lambda waited, size: None,
        tracer: Tracer = tracing.NO_TRACER,
        span_attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self._run = run
        self._executor = executor
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        # Called when a batch starts with its rows and each request's wait and queue span.
        self._on_batch = on_batch
        # Called in the submitting task with its request's wait and batch size (what
        # on_batch observed), so per-request context such as the access log sees them.
        self._on_answered = on_answered
        # How many requests the server has admitted (None: always wait the full delay).
        self._admitted = admitted
        self._submitted = 0  # submitted and not answered yet
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._carry: _Pending | None = None
        # Two batches at once: one runs while the next is gathered and stacked.
        self._slots = asyncio.Semaphore(2)
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._tracer = tracer
        self._span_attributes = dict(span_attributes or {})

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._running, return_exceptions=True)

    async def submit(self, feeds: Feeds) -> Outputs:
        rows = next(iter(feeds.values())).shape[0]
        future = asyncio.get_running_loop().create_future()
        request = trace.get_current_span().get_span_context()
        queue = self._tracer.start_span("queue", attributes=self._span_attributes)
        pending = _Pending(feeds, rows, future, request, queue)
        self._queue.put_nowait(pending)
        self._submitted += 1
        try:
            outputs = await future
        finally:
            self._submitted -= 1
        self._on_answered(pending.waited, pending.batch_rows)
        return outputs

    def _more_on_the_way(self) -> bool:
        return self._admitted is None or self._admitted() > self._submitted

    async def _next(self) -> _Pending:
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        return await self._queue.get()

    async def _gather(self) -> list[_Pending]:
        first = await self._next()
        batch, rows = [first], first.rows
        deadline = time.perf_counter() + self.max_delay_s
        while rows < self.max_batch_size:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or not self._more_on_the_way():
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if rows + item.rows > self.max_batch_size:
                self._carry = item
                break
            batch.append(item)
            rows += item.rows
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            batch = await self._gather()
            task = loop.create_task(self._run_batch(loop, batch))
            self._running.add(task)  # a reference, so the task is not garbage-collected
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending]) -> None:
        try:
            started = time.perf_counter()
            size = sum(p.rows for p in batch)
            for pending in batch:
                pending.waited, pending.batch_rows = started - pending.queued_at, size
                pending.queue.set_attribute(tracing.BATCH_SIZE, size)
                pending.queue.end()
            self._on_batch(size, [(p.waited, p.queue.get_span_context()) for p in batch])
            attributes = {
                **self._span_attributes,
                tracing.BATCH_SIZE: size,
                tracing.BATCH_REQUESTS: len(batch),
            }
            with tracing.batch_span(self._tracer, [p.request for p in batch], attributes):
                outputs = await loop.run_in_executor(
                    self._executor,
                    tracing.in_context(lambda: self._run(stack([p.feeds for p in batch]))),
                )
            for pending, part in zip(batch, split(outputs, [p.rows for p in batch]), strict=True):
                if not pending.future.done():
                    pending.future.set_result(part)
        except Exception as exc:  # one bad batch fails its own requests, not the batcher
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
        finally:
            self._slots.release()
