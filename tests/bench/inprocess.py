"""The ceiling: the raw graph alone, and the whole pipeline in one process.

Both use the server's own code (`load_graph`, the task's pre/post-processing,
`decode_image`, the batcher's `stack`/`split`) without HTTP, queues or threads:

- raw graph: `GraphModel.run` on already prepared tensors, at each batch size;
- in-process pipeline: for `c` concurrent images, decode → preprocess each on a pool of
  as many threads as the server's executor, run ONE graph call on the stacked batch,
  split, postprocess each (models that do not batch: each image's whole pipeline on
  that pool, as the server's executor runs them). With `c` clients each waiting for
  its answer, every image of a round waits for the whole round: that round time is its
  latency. It runs the TensorFlow graph (`TENSORFLOW_PATH`); for an entry the default
  server runs on LiteRT, `litert_pipeline` gives the same pipeline over the server's own LiteRT
  model (`LITERT_PATH`), so that a served `/infer` meets its own runtime.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from modelzoo_models.contract import LITERT
from modelzoo_server.batching import split, stack
from modelzoo_server.imaging import decode_image, to_array
from modelzoo_server.model import can_batch
from modelzoo_server.model_entry import ModelEntry
from modelzoo_server.runtime import load_graph
from modelzoo_server.runtimes import Runtime, load_runtime, runs_pipeline
from modelzoo_server.settings import parse_settings
from modelzoo_server.tasks import TASKS, Task
from tests.bench.loadgen import Load
from tests.bench.plan import Plan
from tests.bench.stats import Cell
from tests.bench.workload import Workload

# The pipeline's rows, named by the runtime that runs the model.
TENSORFLOW_PATH = "in-process, TensorFlow"
LITERT_PATH = "in-process, LiteRT"


@dataclass
class Loaded:
    workload: Workload
    graph: Runtime  # TensorFlow's GraphModel, or the server's LiteRT model (litert_pipeline)
    task: Task
    batchable: bool
    pool: ThreadPoolExecutor

    @property
    def name(self) -> str:
        return self.workload.entry.name


def load(workload: Workload, threads: int) -> Loaded:
    """Import the graph; `threads` is the pool for decoding (the server's executor size)."""
    entry = workload.entry
    graph = load_graph(entry.path, entry.signature, entry.sha256)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="bench-pipeline")
    return Loaded(workload, graph, TASKS[entry.task](entry), can_batch(entry), pool)


def litert_pool(entry: ModelEntry) -> tuple[int, int, int]:
    """The default server's LiteRT pool for the entry on this CPU quota, as its
    `build_model` sizes it (no flags, no MODELZOO_* variables): (members, threads each,
    the lone member's threads or 0)."""
    defaults = parse_settings(["--zoo", entry.name], env={})
    return defaults.litert_members(runs_pipeline(entry))


def alone_threads(entry: ModelEntry) -> int:
    """The threads that a request coming alone runs on: the lone member's, else a pool
    member's (modelzoo_server.litert)."""
    _, threads, lone = litert_pool(entry)
    return lone or threads


def litert_pipeline(loaded: Loaded) -> Loaded:
    """The same pipeline over the server's own LiteRT model and pool; one image a call, as
    the server's LiteRT never batches."""
    entry = loaded.workload.entry
    members, threads, lone = litert_pool(entry)
    model = load_runtime(entry, LITERT, threads=threads, interpreters=members, lone_threads=lone)
    return replace(loaded, graph=model, batchable=False)


def _batch_feeds(loaded: Loaded, batch: int) -> dict[str, np.ndarray]:
    feeds = loaded.workload.feeds
    return stack([feeds[i % len(feeds)] for i in range(batch)])


def raw_graph(loaded: Loaded, sizes: tuple[int, ...], plan: Plan) -> dict[int, Cell]:
    """`GraphModel.run` on ready batches; `requests` counts graph calls.

    Every batch size is measured in `plan.slices` alternating slices, like the other
    paths, so that a change in the machine's load does not fake a batching gain or loss.
    A model that does not batch gets one image per call, cycling through the photos.
    """
    per_size = {
        b: [_batch_feeds(loaded, b)] if loaded.batchable else list(loaded.workload.feeds)
        for b in sizes
    }
    calls, loads = {}, {}
    for batch, calls_feeds in per_size.items():
        for feeds in [*calls_feeds, calls_feeds[0]]:  # warm-up: every shape, then once more
            loaded.graph.run(feeds)
        probe = time.perf_counter()
        loaded.graph.run(calls_feeds[-1])
        per_call = max(time.perf_counter() - probe, 1e-4)
        wanted = min(max(plan.cell_seconds / per_call, 5), max(plan.max_requests // batch, 5))
        calls[batch] = math.ceil(wanted / plan.slices)
        loads[batch] = Load()
    cap = plan.cell_cap_seconds / plan.slices
    for _ in range(plan.slices):
        for batch, calls_feeds in per_size.items():
            load = Load()
            started = time.perf_counter()
            for index in range(calls[batch]):
                if time.perf_counter() >= started + cap:
                    load.capped = True
                    break
                sent = time.perf_counter()
                loaded.graph.run(calls_feeds[index % len(calls_feeds)])
                load.latencies.append(time.perf_counter() - sent)
                load.completed += 1
            load.seconds = time.perf_counter() - started
            loads[batch].merge(load)
    return {
        batch: Cell(
            model=loaded.name,
            path="raw graph",
            batching="n/a",
            concurrency=1,
            batch=batch,
            requests=load.completed,
            errors=0,
            seconds=load.seconds,
            latencies=load.latencies,
            capped=load.capped,
            planned=calls[batch] * plan.slices,
            mean_batch=batch,
        )
        for batch, load in loads.items()
    }


def _round(loaded: Loaded, start: int, size: int) -> None:
    jpegs = loaded.workload.jpegs
    task = loaded.task
    options = task.options({})

    def prepare(index: int):
        image = decode_image(jpegs[index % len(jpegs)])
        return image, task.preprocess(to_array(image), options)

    def whole(index: int) -> None:
        image, feeds = prepare(index)
        task.postprocess(loaded.graph.run(feeds), image.size, options)

    indexes = range(start, start + size)
    if size == 1:
        whole(start)  # no batch to gather, no thread to hand over to
    elif not loaded.batchable:
        list(loaded.pool.map(whole, indexes))
    else:
        prepared = list(loaded.pool.map(prepare, indexes))
        batch = stack([feeds for _, feeds in prepared])
        outputs = split(loaded.graph.run(batch), [1] * size)
        for (image, _), output in zip(prepared, outputs, strict=True):
            task.postprocess(output, image.size, options)


def pipeline(loaded: Loaded, concurrency: int, total: int, cap_s: float, warm: bool) -> Load:
    """`total` images in rounds of `concurrency` (rounded up to whole rounds)."""
    rounds = max(math.ceil(total / concurrency), 1)
    if warm:  # every photo once, at this round size
        for start in range(0, max(concurrency, len(loaded.workload.jpegs)), concurrency):
            _round(loaded, start, concurrency)
    load = Load()
    started = time.perf_counter()
    deadline = started + cap_s
    for index in range(rounds):
        if time.perf_counter() >= deadline:
            load.capped = True
            break
        sent = time.perf_counter()
        _round(loaded, index * concurrency, concurrency)
        load.latencies.extend([time.perf_counter() - sent] * concurrency)
        load.completed += concurrency
    load.seconds = time.perf_counter() - started
    return load
