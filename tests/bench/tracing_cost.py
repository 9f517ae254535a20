"""What tracing costs: the classifier served over REST V2 with tracing off (today's
default) and on (OTLP http/protobuf to a real OpenTelemetry Collector), in alternating
slices; and what tracing *off* costs by itself.

Off, the server differs from the one before tracing only by its calls into
`modelzoo_server.tracing` and OpenTelemetry's no-op API. `noop_calls` counts those calls
for one real request, sent through the server's own app in this process with a profile
hook; `price` times each kind against the no-op tracer. Their sum per request, beside the
off cells' own slice-to-slice spread, says whether that cost is within the noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import sys
import threading
import time
import timeit
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import CodeType, FrameType

import opentelemetry.trace
from opentelemetry import trace

from modelzoo_server import tracing
from modelzoo_server.model import can_batch
from modelzoo_server.model_entry import ModelEntry, RecordError, from_catalog
from modelzoo_server.runtime import load_graph
from modelzoo_server.tasks import TASKS
from modelzoo_server.tasks.image_classification import ImageClassification
from tests.bench import answers, inprocess, served
from tests.bench.litert import served_on_litert
from tests.bench.loadgen import HttpRequest, Load, drive_http
from tests.bench.plan import CLASSIFIER
from tests.bench.run import SAME_C, Context, Section, cell_from_load, planned_requests
from tests.bench.workload import Workload, workload
from tests.cluster import harness
from tests.otel_collector import Collector, otel_collector

CONCURRENCIES = (1, 16)
OFF, ON = "served V2, tracing off", "served V2, tracing on"
SERVICE = "modelzoo-bench"
TRACED_ENV = {  # what an operator sets to turn tracing on; the SDK's other defaults stay
    "OTEL_EXPORTER_OTLP_PROTOCOL": tracing.HTTP_PROTOBUF,
    "OTEL_SERVICE_NAME": SERVICE,
    # Export every 200 ms (default 5 s), so that a slice's spans leave within its own
    # time: a slice lasts about a second.
    "OTEL_BSP_SCHEDULE_DELAY": "200",
}
QUIET_SECONDS = 1.2  # the collector's file unchanged this long: nothing more in flight
PROBE_REPEATS = 5
PROBE_SECONDS = 0.02  # one repeat of one probe

# Where the calls that tracing adds land: the tracing module and OpenTelemetry's API.
_TRACING_FILE = str(Path(tracing.__file__))
_OTEL_DIR = str(Path(opentelemetry.trace.__file__).parents[1])
_SERVER_DIR = str(Path(tracing.__file__).parent)


@dataclass(frozen=True)
class NoopCall:
    """One kind of call a request makes into tracing with tracing off."""

    callee: str  # "tracing.stage", "NonRecordingSpan.end", …
    callers: tuple[str, ...]  # the server functions it is called from
    count: int  # per request
    ns: float  # per call, an upper bound; NaN when no probe prices it


@dataclass
class TracingCost:
    batching: str
    slices: dict[tuple[str, int], list[Load]]  # (OFF or ON, concurrency) → one per slice
    calls: list[NoopCall]
    spans: int  # what the collector got from the traced server
    traced_requests: int  # what the traced server was sent, warm-up included
    collector_cpu_s: float  # the collector's CPU time over the cells

    @property
    def per_request_us(self) -> float:
        """The no-op calls of one request, µs (NaN when one kind has no probe)."""
        return sum(call.count * call.ns for call in self.calls) / 1000

    def _rates(self, c: int) -> list[float]:
        return [s.completed / s.seconds for s in self.slices[OFF, c] if s.seconds > 0]

    def spread(self, c: int) -> float:
        """The off cells' noise: (max − min) ÷ median of their slices' images/s."""
        rates = self._rates(c)
        return (max(rates) - min(rates)) / statistics.median(rates) if rates else math.nan

    def time_per_request_us(self, c: int) -> float:
        """Wall time per request at the off cells' throughput (1 ÷ images/s), µs."""
        rates = self._rates(c)
        return 1e6 / statistics.median(rates) if rates else math.nan

    def share(self, c: int) -> float:
        """The no-op calls against the time per request: the most they could take off
        the throughput, were every call on the critical path."""
        return self.per_request_us / self.time_per_request_us(c)

    def within_noise(self, c: int) -> bool:
        return self.share(c) < self.spread(c)


# -- counting the no-op calls of one request ------------------------------------------------------


def _surface(filename: str) -> bool:
    return filename == _TRACING_FILE or filename.startswith(_OTEL_DIR)


def _callee(code: CodeType) -> str:
    prefix = "tracing." if code.co_filename == _TRACING_FILE else ""
    return prefix + code.co_qualname


def noop_calls(
    model_dir: Path, entry: ModelEntry, flags: list[str], request: HttpRequest
) -> list[tuple[str, str]]:
    """(callee, caller) of every call from server code into tracing or OpenTelemetry
    while one request (after one warm-up request) goes through the server's own app, in
    this process, with tracing off."""
    from aiohttp.test_utils import TestClient, TestServer

    from modelzoo_server.__main__ import build_model
    from modelzoo_server.app import create_app
    from modelzoo_server.metrics import Metrics
    from modelzoo_server.settings import parse_settings

    found: list[tuple[str, str]] = []
    counting = threading.Event()

    def hook(frame: FrameType, event: str, _arg: object) -> None:
        if event != "call" or not counting.is_set() or not _surface(frame.f_code.co_filename):
            return
        caller = frame.f_back
        if caller is None or _surface(caller.f_code.co_filename):
            return  # inside tracing itself: part of the outer call's cost
        if caller.f_code.co_filename.startswith(_SERVER_DIR):
            # A comprehension's frame stands for the function it is written in.
            where = caller.f_code.co_qualname.split(".<locals>.")[0]
            found.append((_callee(frame.f_code), where))

    # env={}: off whatever this process's environment says, as a server without OTEL_*.
    argv = ["--zoo", entry.name, "--model-dir", str(model_dir), "--access-log", "off", *flags]
    settings = parse_settings(argv, env={})

    async def send(client: TestClient) -> None:
        async with client.post(request.path, data=request.body, headers=request.headers) as got:
            body = await got.read()
            if got.status != 200:
                raise answers.WrongAnswer(f"HTTP {got.status}: {body[:200]!r}")
            if request.check is not None:
                request.check(body, got.headers)

    async def serve_two() -> None:
        async with TestClient(TestServer(create_app(settings, model))) as client:
            await send(client)  # warm-up: the executor's threads start, buffers are made
            counting.set()
            await send(client)
            counting.clear()

    # The executor's threads start after this, so they carry the hook too.
    threading.setprofile(hook)
    sys.setprofile(hook)
    executor = ThreadPoolExecutor(settings.executor_threads, thread_name_prefix="count")
    try:
        model = build_model(settings, Metrics(), executor)
        asyncio.run(serve_two())
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        executor.shutdown()
    return found


# -- pricing each kind of call -------------------------------------------------------------------


def _nothing() -> None:
    """A function the server would have called anyway (in_context wraps it)."""


def _probes() -> dict[str, Callable[[], object]]:
    """Each kind of call as the server makes it, on the no-op tracer's objects."""
    attributes = {tracing.MODEL: CLASSIFIER, tracing.RUNTIME: "litert"}
    span = trace.INVALID_SPAN
    request = span.get_span_context()

    def stage() -> None:
        with tracing.stage(tracing.NO_TRACER, "decode", attributes):
            pass

    def batch_span() -> None:
        with tracing.batch_span(tracing.NO_TRACER, [request], attributes):
            pass

    return {
        "tracing.stage": stage,
        "tracing.batch_span": batch_span,
        "tracing.mark_request": partial(tracing.mark_request, CLASSIFIER, "request-id"),
        "tracing.exemplar": tracing.exemplar,
        "tracing.span_ids": tracing.span_ids,
        "tracing.in_context": lambda: tracing.in_context(_nothing)(),  # made, then run
        "get_current_span": trace.get_current_span,
        "NoOpTracer.start_span": partial(
            tracing.NO_TRACER.start_span, "queue", attributes=attributes
        ),
        "NonRecordingSpan.set_attribute": partial(span.set_attribute, tracing.BATCH_SIZE, 1),
        "NonRecordingSpan.set_attributes": partial(span.set_attributes, attributes),
        "NonRecordingSpan.end": span.end,
        "NonRecordingSpan.get_span_context": span.get_span_context,
    }


def price(callees: set[str]) -> dict[str, float]:
    """ns per call of each callee with a probe: the best of PROBE_REPEATS loops, the loop's
    own overhead included (an upper bound)."""
    probes = _probes()
    prices = {}
    for callee in sorted(callees & probes.keys()):
        timer = timeit.Timer(probes[callee])
        once = max(timer.timeit(1000) / 1000, 1e-9)
        number = max(1000, round(PROBE_SECONDS / once))
        prices[callee] = min(timer.repeat(PROBE_REPEATS, number)) / number * 1e9
    return prices


def count_and_price(
    model_dir: Path, entry: ModelEntry, flags: list[str], request: HttpRequest
) -> list[NoopCall]:
    """Every kind of no-op call one request makes, counted and priced."""
    found = noop_calls(model_dir, entry, flags, request)
    counts = Counter(callee for callee, _ in found)
    prices = price(set(counts))
    return [
        NoopCall(
            callee,
            tuple(sorted({caller for name, caller in found if name == callee})),
            count,
            prices.get(callee, math.nan),
        )
        for callee, count in counts.most_common()
    ]


# -- the served cells -----------------------------------------------------------------------------


def _reference(work: Workload) -> answers.Answers:
    """The raw graph's answers for the workload's tensors, as the served V2 cells check."""
    entry = work.entry
    graph = load_graph(entry.path, entry.signature, entry.sha256)
    task = TASKS[entry.task](entry)
    top = task.output_name if isinstance(task, ImageClassification) else None
    return answers.reference(graph.run, work.feeds, top)


def _cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _quiet(collector: Collector, timeout: float = 10.0) -> None:
    """Wait until the collector's file stops growing (it writes about once a second): the
    traced server's exports of a slice land in that slice's time, never in the next."""
    size, deadline = -1, time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = collector.spans_file.stat().st_size if collector.spans_file.exists() else 0
        if now == size:
            return
        size = now
        time.sleep(QUIET_SECONDS)


def _alternate(
    ctx: Context,
    urls: dict[str, str],
    requests: list[HttpRequest],
    warmup: int,
    batching: str,
    collector: Collector,
) -> dict[tuple[str, int], list[Load]]:
    """Per concurrency, off and on in `plan.slices` alternating slices; adds the cells."""
    plan = ctx.plan
    slices: dict[tuple[str, int], list[Load]] = {}
    for c in CONCURRENCIES:
        # As many requests as the served V2 cell of this concurrency made in its time.
        known = ctx.find(CLASSIFIER, "served V2", batching, c)
        count = planned_requests(plan, known.images_per_s if known else math.nan, c)
        per_slice, cap = math.ceil(count / plan.slices), plan.cell_cap_seconds / plan.slices
        ctx.log(f"tracing, concurrency {c}: off and on × {plan.slices} alternating slices")
        batches = {path: [0.0, 0.0] for path in urls}
        for index in range(plan.slices):
            for path, url in urls.items():
                before = served.batch_totals(url, CLASSIFIER)
                load = drive_http(url, requests, c, per_slice, cap, warmup if index == 0 else 0)
                after = served.batch_totals(url, CLASSIFIER)
                if path == ON:
                    _quiet(collector)
                slices.setdefault((path, c), []).append(load)
                batches[path][0] += after[0] - before[0]
                batches[path][1] += after[1] - before[1]
        off = None
        for path in urls:
            merged = Load()
            for load in slices[path, c]:
                merged.merge(load)
            cell = cell_from_load(CLASSIFIER, path, batching, c, per_slice * plan.slices, merged)
            total, calls = batches[path]
            cell.mean_batch = total / calls if calls else 1.0
            if path == OFF:
                baseline = ctx.find(CLASSIFIER, inprocess.TENSORFLOW_PATH, "n/a", c)
                off = ctx.add(cell, baseline, SAME_C)
            else:
                ctx.add(cell, off, "tracing off, same concurrency")
            if merged.errors:
                ctx.log(f"  first error: {merged.first_error}")
    return slices


def _measure(
    ctx: Context,
    work: Workload,
    requests: list[HttpRequest],
    flags: tuple[str, ...],
    batching: str,
    bin_dir: Path,
) -> tuple[dict[tuple[str, int], list[Load]], int, int, float]:
    """The off and on cells' slices, then the collector's figures: the spans it got from
    the traced server, the requests that server was sent, the collector's CPU seconds."""
    entry, warmup = work.entry, len(work.jpegs)
    with otel_collector(bin_dir, ctx.work / "otelcol") as collector:
        traced = {**TRACED_ENV, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.http_endpoint}
        with contextlib.ExitStack() as stack:
            urls = {}
            for path, env in ((OFF, {}), (ON, traced)):
                log = ctx.work / f"server-tracing-{path.rsplit(' ', 1)[1]}.log"
                server = stack.enter_context(
                    served.modelzoo_server(entry.name, ctx.model_dir, flags, log, env)
                )
                urls[path] = server.url
            cpu = _cpu_seconds(collector.pid)
            slices = _alternate(ctx, urls, requests, warmup, batching, collector)
            cpu = _cpu_seconds(collector.pid) - cpu
        # Stopped: the traced server has flushed what it still held.
        _quiet(collector)
        spans = sum(1 for span in collector.spans() if span.service == SERVICE)
    on = [load for (path, _), loads in slices.items() if path == ON for load in loads]
    sent = sum(load.completed + load.errors for load in on) + warmup * len(CONCURRENCIES)
    return slices, spans, sent, cpu


def section(ctx: Context) -> None:
    """The classifier served with tracing off and on; the no-op calls' cost; the report."""
    what = "tracing's cost"
    if CLASSIFIER not in ctx.plan.models:
        ctx.skipped.append((what, f"{CLASSIFIER} is not in this run's models"))
        return
    bin_dir = harness.bin_dir()  # `make bench` builds it (cluster-bins); never built here
    if not (bin_dir / "otelcol").is_file():
        why = f"no OpenTelemetry Collector at {bin_dir}/otelcol: run tests/cluster/build.sh"
        ctx.skipped.append((what, why))
        return
    try:
        entry = from_catalog(ctx.model_dir, CLASSIFIER)
    except RecordError as exc:
        ctx.skipped.append((what, f"{CLASSIFIER} is not in the built catalog: {exc}"))
        return
    # The model's default server: batching on where the batcher runs (TensorFlow); on
    # LiteRT, which does not batch, the default flags (off); n/a where it cannot batch.
    if not can_batch(entry):
        batching, flags = "n/a", ()
    elif served_on_litert(entry):
        batching, flags = "off", ctx.plan.batching_off
    else:
        batching, flags = "on", ctx.plan.batching_on
    ctx.log(f"== tracing: {entry.name}, REST V2, batching {batching}; the no-op calls first")
    work = workload(entry)
    requests = work.v2_requests(entry.name, _reference(work))
    calls = count_and_price(ctx.model_dir, entry, list(flags), requests[0])
    slices, spans, sent, cpu = _measure(ctx, work, requests, flags, batching, bin_dir)
    cost = TracingCost(batching, slices, calls, spans, sent, cpu)
    ctx.tracing = cost
    ctx.log(
        f"tracing: {cost.spans} spans exported for {cost.traced_requests} requests; no-op "
        f"calls {cost.per_request_us:.2f} µs per request"
    )
    ctx.sections.append(Section(title="Tracing", measured=True, text=describe(ctx, cost)))


# -- the report's section -------------------------------------------------------------------------


def _table(header: tuple[str, ...], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _ratio(mine: float, theirs: float) -> str:
    return f"{mine / theirs:.3f}" if theirs else "nan"


def _cells_rows(ctx: Context, cost: TracingCost) -> list[list[str]]:
    rows = []
    for c in CONCURRENCIES:
        off = ctx.find(CLASSIFIER, OFF, cost.batching, c)
        on = ctx.find(CLASSIFIER, ON, cost.batching, c)
        if off is None or on is None:
            continue
        row = [str(c), f"{off.images_per_s:.1f}", f"{on.images_per_s:.1f}"]
        row.append(_ratio(on.images_per_s, off.images_per_s))
        for q in (50, 99):
            row += [f"{off.p(q):.2f}", f"{on.p(q):.2f}", _ratio(on.p(q), off.p(q))]
        rows.append([*row, f"{cost.spread(c) * 100:.1f} %"])
    return rows


def _calls_rows(cost: TracingCost) -> list[list[str]]:
    rows = [
        [
            f"`{call.callee}`",
            ", ".join(f"`{caller}`" for caller in call.callers),
            str(call.count),
            f"{call.ns:.0f}",
            f"{call.count * call.ns / 1000:.3f}",
        ]
        for call in cost.calls
    ]
    total = sum(call.count for call in cost.calls)
    return [*rows, ["**all**", "", str(total), "", f"**{cost.per_request_us:.3f}**"]]


def _noise_rows(ctx: Context, cost: TracingCost) -> list[list[str]]:
    rows = []
    for c in CONCURRENCIES:
        off = ctx.find(CLASSIFIER, OFF, cost.batching, c)
        p50_us = off.p(50) * 1000 if off else math.nan
        rows.append(
            [
                str(c),
                f"{cost.per_request_us:.3f}",
                f"{cost.per_request_us / p50_us * 100:.4f} %",
                f"{cost.time_per_request_us(c):.0f}",
                f"{cost.share(c) * 100:.4f} %",
                f"{cost.spread(c) * 100:.2f} %",
                "yes" if cost.within_noise(c) else "**no**",
            ]
        )
    return rows


RULE = (
    "Rule: tracing off is *within noise* when, at every concurrency here, the no-op calls' "
    "cost per request as a share of the time per request at the off cells' throughput "
    "(the most they could take off that throughput, were every call on the critical path) "
    "is smaller than the off cells' own spread, (max − min) ÷ median of their slices' "
    "images/s: a difference that size cannot be told from the off server's own variation "
    "between slices of one run."
)


def describe(ctx: Context, cost: TracingCost) -> str:
    slices = ctx.plan.slices
    per_request = cost.spans / cost.traced_requests if cost.traced_requests else math.nan
    return "\n\n".join(
        [
            f"`{CLASSIFIER}` served over REST V2 (batching {cost.batching}), the same tensors "
            "and answer checks as the served V2 cells, by two servers up together: tracing "
            "off (no `OTEL_*` variables: today's default) and tracing on "
            "(`OTEL_EXPORTER_OTLP_ENDPOINT` to a real OpenTelemetry Collector on loopback, "
            "http/protobuf, the SDK's default sampler, its batch span processor exporting "
            f"every {TRACED_ENV['OTEL_BSP_SCHEDULE_DELAY']} ms instead of 5 s so that a "
            "slice's spans leave within the slice), measured in "
            f"{slices} alternating slices (off, on, off, on …); after each on slice the "
            "bench waits for the collector to have written everything, so that no export "
            "lands in an off slice. The collector (tests/otel_collector.py, writing every "
            "span to a file) shares the cores with the servers and the load generator: it "
            f"used {cost.collector_cpu_s:.2f} CPU-seconds over the cells "
            f"({cost.collector_cpu_s / cost.traced_requests * 1000:.2f} ms per traced "
            f"request). It got {cost.spans:,} spans for {cost.traced_requests:,} requests to "
            f"the traced server ({per_request:.1f} per request: each request's server span "
            "and its stages; a batch's span and its graph span serve every request of the "
            "batch). Ratios are on ÷ off; the spread is the off cells' (max − min) ÷ median "
            "of their slices' images/s.",
            _table(
                (
                    "concurrency",
                    "off images/s",
                    "on images/s",
                    "on ÷ off",
                    "off p50 ms",
                    "on p50 ms",
                    "on ÷ off p50",
                    "off p99 ms",
                    "on p99 ms",
                    "on ÷ off p99",
                    "off slices' spread",
                ),
                _cells_rows(ctx, cost),
            ),
            "**What tracing off costs.** Off, the server differs from the one before "
            "tracing only by its calls into `modelzoo_server.tracing` and OpenTelemetry's "
            "no-op API. They are counted for one REST V2 request sent through the server's "
            "own app (`create_app`, the catalog's model, the same flags, no `OTEL_*`) in the "
            "bench process after one warm-up request, with a profile hook on every thread "
            "that records each call from server code into those two (calls they make "
            "inside are part of the outer call). The request is alone in its batch, so it "
            "pays every batch-level call alone: an upper bound per request. Each kind is "
            f"then timed in a loop as the server makes it (best of {PROBE_REPEATS} loops of "
            f"{PROBE_SECONDS * 1000:.0f} ms; the loop's own overhead included: an upper "
            "bound too).",
            _table(
                ("call", "called from", "per request", "ns per call", "µs per request"),
                _calls_rows(cost),
            ),
            _table(
                (
                    "concurrency",
                    "no-op calls, µs per request",
                    "% of the off p50",
                    "time per request at the off images/s, µs",
                    "% of that time",
                    "off slices' spread",
                    "within noise",
                ),
                _noise_rows(ctx, cost),
            ),
            RULE,
        ]
    )
