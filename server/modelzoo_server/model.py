"""A served model's life cycle: load → warm up → ready → infer, with admission control.

The event loop only parses, queues and answers; decoding, pre-processing and
the graph run in a bounded thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, Tracer
from PIL import Image

from modelzoo_models.contract import TENSOR
from modelzoo_server import tracing
from modelzoo_server.access_log import note_graph_call
from modelzoo_server.batching import Batcher
from modelzoo_server.errors import InvalidInput, ModelNotReady, ServerOverloaded
from modelzoo_server.imaging import ImageLimits, decode_image, encode_png, to_array
from modelzoo_server.metrics import Metrics
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.runtime import LoadLimits
from modelzoo_server.runtimes import LITERT, TENSORFLOW, Runtime, import_runtime, load_runtime
from modelzoo_server.signature import FeedLimits, validate_feeds
from modelzoo_server.tasks import TASKS, Task

log = logging.getLogger("modelzoo.model")


def can_batch(entry: ModelEntry) -> bool:
    """Stackable: every input has a free leading dimension and fixed other dimensions."""
    return entry.batchable and all(
        s.shape and s.shape[0] == -1 and -1 not in s.shape[1:] for s in entry.signature.inputs
    )


# Dynamic batching on LiteRT (XNNPACK), measured on 2 CPUs for each batchable entry served
# there (mobilenet, nsfw, emotion): `--max-batch-size 32 --max-delay-ms 5` against off,
# REST V2 at concurrency 16 and 64, gave no more images/s (differences within the runs'
# noise, of both signs) and never less server CPU per request (mobilenet 15-17 ms, nsfw
# 10-12, emotion 2.1-2.6, either way); in-process too, batches of 8 and 32 ran no more
# images/s than batch 1. But an interpreter keeps the buffers of the largest batch it
# planned: with the default pool, resident memory after a few thousand requests went
# from 175 to 775 MiB (mobilenet), 156 to 880 (nsfw), 98 to 195 (emotion), against 217,
# 202 and 101 MiB unbatched. So a model on LiteRT never batches, whatever the entry.
LITERT_UNBATCHED = (
    "off on LiteRT: batches measured no faster than single calls there, and every batch "
    "size an interpreter plans grows its memory"
)


def why_unbatched(entry: ModelEntry, runtime: str, max_batch_size: int) -> str | None:
    """Why dynamic batching is off for this model, in words; None when it is on."""
    if max_batch_size <= 1:
        return "off (--max-batch-size 1)"
    if not can_batch(entry):
        return "off: the model's inputs do not stack along a batch dimension"
    if runtime == LITERT:
        return LITERT_UNBATCHED
    return None


class ServedModel:
    def __init__(
        self,
        entry: ModelEntry,
        metrics: Metrics,
        executor: ThreadPoolExecutor,
        max_inflight: int,
        max_batch_size: int = 1,
        max_delay_ms: float = 5.0,
        image_limits: ImageLimits = ImageLimits(),
        feed_limits: FeedLimits = FeedLimits(),
        load_limits: LoadLimits = LoadLimits(),
        runtime: str = TENSORFLOW,
        threads: int = 1,
        interpreters: int = 1,
        lone_threads: int = 0,
        tracer: Tracer = tracing.NO_TRACER,
    ) -> None:
        self.entry = entry
        self.runtime = runtime  # runtimes.LITERT or TENSORFLOW, chosen by runtimes.choose
        self.tracer = tracer
        # On every span this model opens.
        self.span_attributes = {tracing.MODEL: entry.name, tracing.RUNTIME: runtime}
        self._threads = threads
        self._interpreters = interpreters
        self._lone_threads = lone_threads
        self.name = entry.name
        self.metrics = metrics
        # A "tensor" model has no image pipeline: it is served over V2 only. Every other
        # task of the contract has a class (tests/unit/test_contract.py checks it).
        self.task: Task | None = None if entry.task == TENSOR else TASKS[entry.task](entry)
        self._executor = executor
        self.max_inflight = max_inflight
        metrics.max_inflight.labels(self.name).set(max_inflight)
        # Exported as 0 from the start: an autoscaler reading it finds an idle pod, not a
        # missing metric (which an HPA cannot act on).
        metrics.inflight.labels(self.name).set(0)
        self._inflight = 0
        self._image_limits = image_limits
        self._feed_limits = feed_limits
        self._load_limits = load_limits
        self._graph: Runtime | None = None
        self.ready = False
        self.batcher: Batcher | None = None
        unbatched = why_unbatched(entry, runtime, max_batch_size)
        # Shown in the start-up log and the V2 metadata.
        self.batching = unbatched or (
            f"on: up to {max_batch_size} rows, waiting up to {max_delay_ms:g} ms"
        )
        if unbatched is None:
            self.batcher = Batcher(
                self._run_batch_blocking,
                executor,
                max_batch_size,
                max_delay_ms / 1000,
                on_batch=self._observe_batch,
                admitted=lambda: self._inflight,
                on_answered=note_graph_call,
                tracer=tracer,
                span_attributes=self.span_attributes,
            )

    # -- life cycle -----------------------------------------------------------------
    def load(self) -> float:
        """Blocking: check and import the graph, then warm it up. Returns the seconds taken."""
        started = time.perf_counter()
        import_runtime(self.runtime)
        imported = time.perf_counter()
        self._graph = load_runtime(
            self.entry,
            self.runtime,
            self._load_limits,
            self._feed_limits,
            self._threads,
            self._interpreters,
            self._lone_threads,
        )
        loaded = time.perf_counter()
        # A LiteRT pool warms every interpreter, not only the one a lone call takes.
        warm_up = getattr(self._graph, "warm_up", self._graph.run)
        warm_up(self._warmup_feeds())
        done = time.perf_counter()
        seconds = done - started
        self.metrics.load_seconds.labels(self.name).set(seconds)
        info = (self.name, self.entry.task, self.entry.sha256 or "", self.runtime)
        self.metrics.info.labels(*info).set(1)
        self.ready = True
        log.info(
            "model %s ready (%s, %s) in %.2fs: runtime import %.2fs, load %.2fs, warm-up %.2fs",
            self.name,
            self.entry.task,
            self.runtime,
            seconds,
            imported - started,
            loaded - imported,
            done - loaded,
        )
        return seconds

    def _warmup_feeds(self) -> dict[str, np.ndarray]:
        if self.task is not None:
            image = self.task.warmup_image()
            return self.task.preprocess(image, self.task.options({}))
        # A tensor model: zeros of each input, free dimensions set to 1.
        return {
            s.name: np.zeros([1 if d == -1 else d for d in s.shape], dtype=s.dtype)
            for s in self.entry.signature.inputs
        }

    # -- admission ----------------------------------------------------------------------
    def span(self, name: str) -> contextlib.AbstractContextManager[Span]:
        """A span of one stage of the current request, as the current span."""
        return tracing.stage(self.tracer, name, self.span_attributes)

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        # A refusal ends the span with the error (the SDK records it).
        with self.span("admission") as span:
            span.set_attribute(tracing.INFLIGHT, self._inflight)
            if not self.ready:
                raise ModelNotReady(f"model {self.name!r} is not ready yet", retry_after=2)
            if self._inflight >= self.max_inflight:
                raise ServerOverloaded(
                    f"model {self.name!r} has {self._inflight} requests in flight "
                    f"(limit {self.max_inflight}); retry later"
                )
        self._inflight += 1
        self.metrics.inflight.labels(self.name).inc()
        try:
            yield
        finally:
            self._inflight -= 1
            self.metrics.inflight.labels(self.name).dec()

    async def start(self) -> None:
        if self.batcher is not None:
            self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    # -- inference --------------------------------------------------------------------------
    def _observe_batch(self, size: int, waits: list[tuple[float, SpanContext]]) -> None:
        """`waits`: each request's wait, and its queue span (the exemplar)."""
        self.metrics.batch_size.labels(self.name).observe(size)
        for wait, queued in waits:
            self.metrics.queue_duration.labels(self.name).observe(
                wait, exemplar=tracing.exemplar(queued)
            )

    def _run_batch_blocking(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self._graph is not None
        with self.span("graph"):  # under its batch span, which has the batch's size
            started = time.perf_counter()
            outputs = self._graph.run(feeds)
            self.metrics.inference_duration.labels(self.name).observe(
                time.perf_counter() - started, exemplar=tracing.exemplar()
            )
        return outputs

    @staticmethod
    def _dequeued(queued_at: float, queue: Span) -> float:
        """End a lone request's queue span as an executor thread takes it up; its wait."""
        waited = time.perf_counter() - queued_at
        queue.set_attribute(tracing.BATCH_SIZE, 1)
        queue.end()
        return waited

    def _run_alone(
        self, feeds: Mapping[str, np.ndarray], waited: float, queue: Span, request: SpanContext
    ) -> dict[str, np.ndarray]:
        """One request's graph call, a batch of one."""
        self._observe_batch(1, [(waited, queue.get_span_context())])
        attributes = {**self.span_attributes, tracing.BATCH_SIZE: 1, tracing.BATCH_REQUESTS: 1}
        with tracing.batch_span(self.tracer, [request], attributes):
            return self._run_batch_blocking(feeds)

    def _run_one_blocking(
        self,
        feeds: Mapping[str, np.ndarray],
        queued_at: float,
        queue: Span,
        request: SpanContext,
    ) -> tuple[dict[str, np.ndarray], float]:
        """The outputs and the wait, returned because this thread runs outside the request's
        context, where the access log takes it."""
        waited = self._dequeued(queued_at, queue)
        return self._run_alone(feeds, waited, queue, request), waited

    def _infer_image_alone(
        self,
        data: bytes | bytearray,
        options: Any,
        queued_at: float,
        queue: Span,
        request: SpanContext,
    ) -> tuple[dict[str, Any], Image.Image, float]:
        """A whole unbatched /infer in one executor job, bytes to result, and the wait."""
        waited = self._dequeued(queued_at, queue)
        image, feeds = self._decode_and_prepare(data, options)
        outputs = self._run_alone(feeds, waited, queue, request)
        return self._postprocess(outputs, image.size, options), image, waited

    async def run_tensors(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on raw tensors (V2); validation happens before TensorFlow."""
        if self.batcher is not None:
            # Check each request alone, so one bad request cannot fail a whole batch.
            validate_feeds(self.entry.signature, feeds, self._feed_limits)
            if any(value.shape[0] < 1 for value in feeds.values()):
                raise InvalidInput("every input needs at least one row in its batch dimension")
            return await self.batcher.submit(feeds)
        loop = asyncio.get_running_loop()
        request = trace.get_current_span().get_span_context()
        queue = self.tracer.start_span("queue", attributes=self.span_attributes)
        outputs, waited = await loop.run_in_executor(
            self._executor, self._run_one_blocking, feeds, time.perf_counter(), queue, request
        )
        note_graph_call(waited, 1)
        return outputs

    def _decode_and_prepare(
        self, data: bytes | bytearray, options: Any
    ) -> tuple[Image.Image, dict]:
        assert self.task is not None
        with self.span("decode"):
            image = decode_image(data, self._image_limits)
        with self.span("preprocess"):
            return image, self.task.preprocess(to_array(image), options)

    def _postprocess(self, outputs: Mapping[str, np.ndarray], size: Any, options: Any) -> dict:
        assert self.task is not None
        with self.span("postprocess"):
            return self.task.postprocess(outputs, size, options)

    async def infer_image(
        self, data: bytes | bytearray, params: Mapping[str, str]
    ) -> tuple[dict[str, Any], Image.Image]:
        """Image bytes → the task's JSON result and the decoded upright image."""
        if self.task is None:
            raise InvalidInput(
                f"model {self.name!r} is a raw tensor model: use /v2/models/{self.name}/infer"
            )
        options = self.task.options(params)
        loop = asyncio.get_running_loop()
        if self.batcher is None:
            # One executor job, not three: each round trip between the loop and the
            # executor cost a lone request about 0.3 ms (measured in the server).
            request = trace.get_current_span().get_span_context()
            queue = self.tracer.start_span("queue", attributes=self.span_attributes)
            job = (self._infer_image_alone, data, options, time.perf_counter(), queue, request)
            result, image, waited = await loop.run_in_executor(
                self._executor, tracing.in_context(*job)
            )
            note_graph_call(waited, 1)
            return result, image
        image, feeds = await loop.run_in_executor(
            self._executor, tracing.in_context(self._decode_and_prepare, data, options)
        )
        outputs = await self.run_tensors(feeds)
        # Off the loop: CenterNet's NMS is pure Python, ~2.5 ms with a low score threshold.
        result = await loop.run_in_executor(
            self._executor, tracing.in_context(self._postprocess, outputs, image.size, options)
        )
        return result, image

    async def render_png(self, image: Image.Image, result: Mapping[str, Any]) -> bytes:
        assert self.task is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, tracing.in_context(self._render_png, image, result)
        )

    def _render_png(self, image: Image.Image, result: Mapping[str, Any]) -> bytes:
        assert self.task is not None
        with self.span("encode"):
            return encode_png(self.task.draw(image, result))
