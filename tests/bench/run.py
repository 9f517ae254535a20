"""One bench run: its sections, in order, each adding cells (or saying why it could not).

A section is a function `(Context) -> None` in `SECTIONS`; to measure something new
(the operator's time from `kubectl apply` to Ready, say) write one more and list it.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from modelzoo_models.contract import TENSORFLOW
from modelzoo_server.cpu import available_cpus
from modelzoo_server.model import can_batch
from modelzoo_server.model_entry import ModelEntry, RecordError, from_catalog
from modelzoo_server.tasks.image_classification import ImageClassification
from tests.bench import answers, inprocess, peers, served, venvs
from tests.bench.grpc_load import GrpcRequest, drive_grpc
from tests.bench.loadgen import HttpRequest, Load, drive_http
from tests.bench.plan import CLASSIFIER, FACES, KSERVE_MODELS, MEMORY_MODEL, Plan
from tests.bench.stats import Cell
from tests.bench.workload import Workload, workload

if TYPE_CHECKING:  # their modules import this one
    from tests.bench.litert import LiteRTFigures
    from tests.bench.tracing_cost import TracingCost


@dataclass
class Memory:
    model: str
    at_ready: int
    after_warmup: int
    after: int
    warmup_requests: int
    requests: int
    planned: int
    errors: int
    seconds: float
    capped: bool
    curve: list[tuple[int, int]]  # (requests after the warm-up, VmRSS bytes)
    batching: str = "batching on"  # how it was served, in words (the report's)

    @property
    def growth(self) -> float:
        """After the counted requests ÷ after the warm-up."""
        return self.after / self.after_warmup


@dataclass
class Section:
    """A part of the report that is not a table of cells (or that could not be measured)."""

    title: str
    measured: bool
    text: str


@dataclass
class Context:
    plan: Plan
    model_dir: Path
    work: Path  # server logs
    log: Callable[[str], None]
    cells: list[Cell] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    memory: Memory | None = None
    sections: list[Section] = field(default_factory=list)
    kserve_python: Path | None = None
    kserve_cause: str = ""  # kserve_profile.py: where KServe's time goes, in one sentence
    litert: LiteRTFigures | None = None  # litert.py
    tracing: TracingCost | None = None  # tracing_cost.py

    def find(self, model: str, path: str, batching: str, concurrency: int, batch: int = 1):
        for cell in self.cells:
            if (cell.model, cell.path, cell.batching, cell.concurrency, cell.batch) == (
                model,
                path,
                batching,
                concurrency,
                batch,
            ):
                return cell
        return None

    def find_default(self, model: str, path: str, concurrency: int) -> Cell | None:
        """The cell of the model's default server on `path`: batching on where it was
        measured (an entry served on TensorFlow), else off (an entry served on LiteRT,
        which does not batch), else n/a (an entry that cannot batch)."""
        for batching in ("on", "off", "n/a"):
            cell = self.find(model, path, batching, concurrency)
            if cell is not None:
                return cell
        return None

    def add(self, cell: Cell, baseline: Cell | None, baseline_label: str) -> Cell:
        # A cell without a baseline is its own (the raw graph at batch 1): ratio 1.
        cell.baseline = baseline if baseline is not None else cell
        cell.baseline_label = baseline_label
        self.cells.append(cell)
        figures = (
            f"{cell.requests} {'calls' if cell.path == 'raw graph' else 'requests'} "
            f"in {cell.seconds:.1f}s → {cell.images_per_s:.1f} images/s, "
            f"p50 {cell.p(50):.1f} ms, p99 {cell.p(99):.1f} ms"
        )
        if baseline is not None:
            figures += f"; ×{cell.ratio('images/s'):.2f} the images/s of the {baseline_label}"
        if cell.errors:
            figures += f"; {cell.errors} ERRORS"
        if cell.capped:
            figures += f"; time cap hit ({cell.planned} planned)"
        self.log(f"{cell.label}: {figures}")
        return cell


RAW1 = "raw graph, batch 1"
SAME_C = "in-process pipeline on TensorFlow, same concurrency"


def _http_job(
    url: str,
    requests: list[HttpRequest],
    concurrency: int,
    total: int,
    cap_s: float,
    warmup: int,
    first: bool,
) -> Load:
    return drive_http(url, requests, concurrency, total, cap_s, warmup if first else 0)


def _grpc_job(
    address: str,
    model: str,
    requests: list[GrpcRequest],
    concurrency: int,
    total: int,
    cap_s: float,
    warmup: int,
    first: bool,
) -> Load:
    return drive_grpc(address, model, requests, concurrency, total, cap_s, warmup if first else 0)


def cell_from_load(
    model: str, path: str, batching: str, concurrency: int, planned: int, load: Load
) -> Cell:
    return Cell(
        model=model,
        path=path,
        batching=batching,
        concurrency=concurrency,
        batch=1,
        requests=load.completed,
        errors=load.errors,
        seconds=load.seconds,
        latencies=load.latencies,
        capped=load.capped,
        planned=planned,
        client_cpu_seconds=load.cpu_seconds,
    )


def server_side(cell: Cell, scraped: dict[str, float]) -> None:
    """The server's own figures over a served cell, from the sums and counts its
    /metrics gained (served.scrape): images per graph call, mean handler and model call."""

    def mean(key: str) -> float:
        count = scraped.get(f"{key}_count", 0.0)
        return scraped[f"{key}_sum"] / count if count else math.nan

    batch = mean("batch")
    cell.mean_batch = 1.0 if math.isnan(batch) else batch
    cell.handler_ms = mean("handler") * 1000
    cell.model_call_ms = mean("model") * 1000


def planned_requests(plan: Plan, rate: float, concurrency: int) -> int:
    """The fixed request count of a cell: about `cell_seconds` at `rate`, within bounds."""
    wanted = plan.cell_seconds * rate if rate > 0 and not math.isnan(rate) else 0
    count = max(round(wanted), plan.min_rounds * concurrency)
    return min(count, max(plan.max_requests, concurrency))


# -- the zoo models ------------------------------------------------------------------------


def models_section(ctx: Context) -> None:
    for name in ctx.plan.models:
        try:
            entry = from_catalog(ctx.model_dir, name)
        except RecordError as exc:
            ctx.skipped.append((f"model {name}", f"not in the built catalog: {exc}"))
            ctx.log(f"skipping {name}: {exc}")
            continue
        measure_model(ctx, workload(entry))


def measure_model(ctx: Context, work: Workload) -> None:
    """Raw graph (and LiteRT's ceiling), then per concurrency: in-process, served (on/off ×
    /infer, REST V2, gRPC V2), peers. An entry served on LiteRT, which never batches, gets
    one server (`batching_off`: the default flags), at concurrency 1 the in-process
    pipeline on LiteRT too (a lone `/infer`'s baseline), and, at litert.TF_CONCURRENCIES,
    REST V2 on TensorFlow with batching on and off (where the batcher still runs).

    Every server of the model is started first and stays up (idle when not measured), so
    each concurrency's cells run back to back, minutes closer to their baseline.
    """
    from tests.bench import litert  # it imports this module

    plan, entry = ctx.plan, work.entry
    name = entry.name
    ctx.log(f"== {name} ({entry.task}, {'batches' if can_batch(entry) else 'does not batch'})")
    loaded = inprocess.load(work, threads=max(2, available_cpus()))  # the server's executor

    # (1) the raw graph at each batch size
    sizes = plan.batch_sizes if loaded.batchable else (1,)
    ctx.log(f"{name}, raw graph: batch sizes {sizes} × {plan.slices} alternating slices")
    raw = inprocess.raw_graph(loaded, sizes, plan)
    for batch, cell in raw.items():
        ctx.add(cell, raw[1] if batch != 1 else None, RAW1)

    # On LiteRT the batching flags change nothing (modelzoo_server.model.why_unbatched):
    # "on" would be the "off" server again, so only the default one runs there.
    both: list[tuple[str, Sequence[str]]] = [
        ("on", plan.batching_on),
        ("off", plan.batching_off),
    ]
    on_litert = litert.served_on_litert(entry)
    if on_litert:
        litert.figures(ctx).served.append(name)
    if not can_batch(entry):
        configs: list[tuple[str, Sequence[str]]] = [("n/a", ())]
    elif on_litert:
        configs = [("off", plan.batching_off)]
    else:
        configs = both
    # V2 answers, REST and gRPC alike, must be the raw graph's for the same tensors.
    top = loaded.task.output_name if isinstance(loaded.task, ImageClassification) else None
    right = answers.reference(loaded.graph.run, work.feeds, top)
    # LiteRT's own ceiling beside the raw graph's, for entries served on LiteRT.
    litert.ceiling(ctx, work, right, raw[1])
    lite = inprocess.litert_pipeline(loaded) if on_litert else None
    endpoints: list[tuple[str, list[HttpRequest]]] = [
        ("served /infer", work.infer_requests),
        ("served V2", work.v2_requests(name, right)),
    ]
    if on_litert:  # for the V2 latency target: its baseline, and what a request carries
        found = litert.figures(ctx)
        found.alone_threads[name] = inprocess.alone_threads(entry)
        found.tensor_bytes[name] = [sum(v.nbytes for v in f.values()) for f in work.feeds]
        found.v2_body_bytes[name] = [len(r.body) for r in endpoints[1][1]]
    grpc_requests = work.grpc_requests(right)
    warmup = len(work.jpegs)
    with contextlib.ExitStack() as stack:
        servers = {}
        for batching, flags in configs:
            log = ctx.work / f"server-{name}-batching-{batching.replace('/', '')}.log"
            try:
                servers[batching] = stack.enter_context(
                    served.modelzoo_server(name, ctx.model_dir, flags, log)
                )
            except (RuntimeError, TimeoutError, OSError) as exc:
                ctx.skipped.append((f"{name} served, batching {batching}", f"no server: {exc}"))
                ctx.log(f"server for {name} (batching {batching}) failed: {exc}")
        kserve = kserve_peers(ctx, entry, stack)
        # An entry served on LiteRT, served again on TensorFlow: batching on and off where
        # it batches; {} for an entry served on TensorFlow.
        tensorflow = litert.tensorflow_servers(
            ctx, entry, both if can_batch(entry) else configs, stack
        )

        for c in plan.concurrencies:
            # One fixed request count for every path at this concurrency, from the raw
            # graph's images/s at the nearest batch size (models that batch) or at batch 1.
            nearest = max(b for b in raw if b <= c) if loaded.batchable else 1
            count = planned_requests(plan, raw[nearest].images_per_s, c)
            per_slice = math.ceil(count / plan.slices)
            cap = plan.cell_cap_seconds / plan.slices
            warm = max(c, warmup)
            jobs: dict[tuple[str, str], Callable[[bool], Load]] = {}
            metrics_url: dict[tuple[str, str], str] = {}  # whose batch sizes a job reads
            # (2) the in-process pipeline: this concurrency's baseline; on LiteRT too for
            # a lone request, the server's runtime (issue 13's /infer latency target)
            jobs[inprocess.TENSORFLOW_PATH, "n/a"] = partial(
                inprocess.pipeline, loaded, c, per_slice, cap
            )
            if lite is not None and c == 1:
                jobs[inprocess.LITERT_PATH, "n/a"] = partial(
                    inprocess.pipeline, lite, c, per_slice, cap
                )
                jobs[litert.ALONE_PATH, "n/a"] = litert.alone_job(
                    work, inprocess.alone_threads(entry), per_slice, cap
                )
            # (3) ModelZoo's server: /infer and V2, batching on and off where it batches
            for batching, server in servers.items():
                for path, requests in endpoints:
                    jobs[path, batching] = partial(
                        _http_job, server.url, requests, c, per_slice, cap, warm
                    )
                    metrics_url[path, batching] = server.url
                if server.grpc_address is not None:
                    jobs["served gRPC", batching] = partial(
                        _grpc_job, server.grpc_address, name, grpc_requests, c, per_slice, cap, warm
                    )
                    metrics_url["served gRPC", batching] = server.url
            for batching, server in tensorflow.items() if c in litert.TF_CONCURRENCIES else ():
                key = (litert.TF_SERVED, batching)
                v2 = endpoints[1][1]
                jobs[key] = partial(_http_job, server.url, v2, c, per_slice, cap, warm)
                metrics_url[key] = server.url
            # (4) what a user would run instead
            if name == FACES and c in plan.peer_concurrencies_mtcnn:
                jobs["mtcnn package", "n/a"] = partial(
                    peers.mtcnn_package, work.jpegs, c, per_slice, cap
                )
            for peer in kserve:  # answers checked as the served ones
                jobs[peer.path, peer.batching] = (
                    partial(
                        _grpc_job, peer.grpc_address, name, grpc_requests, c, per_slice, cap, warm
                    )
                    if peer.grpc_address is not None
                    else partial(_http_job, peer.url, endpoints[1][1], c, per_slice, cap, warm)
                )

            ctx.log(
                f"{name}, concurrency {c}: {len(jobs)} paths × {plan.slices} alternating "
                f"slices, {per_slice * plan.slices} requests each"
            )
            # Alternating slices: a drift in the machine's load hits every path alike.
            loads = {key: Load() for key in jobs}
            scraped: dict[tuple[str, str], dict[str, float]] = {key: {} for key in jobs}
            for index in range(plan.slices):
                for key, job in jobs.items():
                    url = metrics_url.get(key)
                    before = served.scrape(url, name) if url else {}
                    loads[key].merge(job(index == 0))
                    after = served.scrape(url, name) if url else {}
                    for figure, value in after.items():
                        gained = value - before[figure]
                        scraped[key][figure] = scraped[key].get(figure, 0.0) + gained
            planned = per_slice * plan.slices
            inproc = None
            for (path, batching), load in loads.items():
                cell = cell_from_load(name, path, batching, c, planned, load)
                if path == inprocess.TENSORFLOW_PATH:
                    cell.mean_batch = c if loaded.batchable else 1
                    inproc = ctx.add(cell, raw[1], RAW1)
                    continue
                if path in (inprocess.LITERT_PATH, litert.ALONE_PATH):  # one image a call
                    ctx.add(cell, raw[1], RAW1)
                    continue
                server_side(cell, scraped[path, batching])
                ctx.add(cell, inproc, SAME_C)
                if load.errors:
                    ctx.log(f"  first error: {load.first_error}")
    loaded.pool.shutdown()


def prepare_kserve(ctx: Context) -> None:
    if not any(m in KSERVE_MODELS for m in ctx.plan.models):
        return
    python = venvs.kserve_python()
    if python is None and ctx.plan.build_kserve:
        try:
            python = venvs.ensure_kserve_venv(ctx.log)
        except Exception as exc:  # no registry, a failed install: say so and go on
            ctx.skipped.append(("KServe ModelServer", f"its venv could not be built: {exc}"))
            return
    if python is None:
        ctx.skipped.append(
            (
                "KServe ModelServer",
                f"quick mode uses KServe only when its venv exists ({venvs.kserve_venv()}); "
                "a full run (`python -m tests.bench`) creates it",
            )
        )
    ctx.kserve_python = python


@dataclass(frozen=True)
class Peer:
    """A server of the KServe comparison: its cells' (path, batching) and where to send."""

    path: str
    batching: str
    url: str
    grpc_address: str | None  # set: driven over gRPC; None: over REST V2


def kserve_peers(ctx: Context, entry: ModelEntry, stack: contextlib.ExitStack) -> list[Peer]:
    """KServe's ModelServer in each set-up (naive, tuned), and ModelZoo's server as the
    tuned one's counterpart (peers.KSERVE_COUNTERPART), kept up by `stack`."""
    if entry.name not in KSERVE_MODELS or ctx.kserve_python is None:
        return []
    running = []
    for setup in peers.KSERVE_SETUPS:
        log = ctx.work / f"kserve-{entry.name}-{'tuned' if setup.tuned else 'naive'}.log"
        try:
            server = stack.enter_context(peers.kserve_server(ctx.kserve_python, entry, log, setup))
        except (RuntimeError, TimeoutError, OSError) as exc:
            ctx.skipped.append((f"{entry.name}, {setup.path}", f"KServe failed: {exc}"))
            ctx.log(f"{setup.path} for {entry.name} failed: {exc}")
            continue
        grpc = server.grpc_address if setup.grpc else None
        running.append(Peer(setup.path, "n/a", server.url, grpc))
    flags = [*ctx.plan.batching_off, "--runtime", TENSORFLOW]
    log = ctx.work / f"server-{entry.name}-kserve-counterpart.log"
    try:
        ours = stack.enter_context(served.modelzoo_server(entry.name, ctx.model_dir, flags, log))
    except (RuntimeError, TimeoutError, OSError) as exc:
        ctx.skipped.append((f"{entry.name}, {peers.KSERVE_COUNTERPART}", f"no server: {exc}"))
        return running
    batching = "off" if can_batch(entry) else "n/a"
    running.append(Peer(peers.KSERVE_COUNTERPART, batching, ours.url, ours.grpc_address))
    return running


def kserve_profile_section(ctx: Context) -> None:
    """py-spy inside KServe's process, naive and tuned (tests/bench/kserve_profile.py)."""
    from tests.bench import kserve_profile  # it imports this module

    kserve_profile.section(ctx)


# -- resident memory -----------------------------------------------------------------------


def memory_section(ctx: Context) -> None:
    """The server's VmRSS before and after `memory_requests` requests (half /infer, half V2)."""
    plan = ctx.plan
    if MEMORY_MODEL not in plan.models:
        return
    try:
        entry = from_catalog(ctx.model_dir, MEMORY_MODEL)
    except RecordError as exc:
        ctx.skipped.append(("resident memory", f"{MEMORY_MODEL} not in the catalog: {exc}"))
        return
    work = workload(entry)
    mixed = [
        r
        for pair in zip(work.infer_requests, work.v2_requests(entry.name), strict=True)
        for r in pair
    ]
    concurrency, warmup = 16, plan.memory_warmup
    cap = max(120.0, plan.memory_requests / 10)  # at least 10 requests/s, or it is capped
    log = ctx.work / "server-memory.log"
    from tests.bench import litert  # it imports this module

    # The batching flags; on LiteRT the server ignores them (it never batches there).
    flags = plan.batching_on
    if litert.served_on_litert(entry):
        batching = "the batching-on flags, ignored on LiteRT, which does not batch"
    elif not can_batch(entry):
        batching = "the batching-on flags, which change nothing: the model cannot batch"
    else:
        batching = "batching on"
    ctx.log(
        f"== resident memory: {entry.name}, {batching}, {warmup} warm-up requests, "
        f"then {plan.memory_requests} more"
    )
    chunks = 10
    with served.modelzoo_server(entry.name, ctx.model_dir, flags, log) as server:
        pid = server.process.pid
        at_ready = served.rss_bytes(pid)
        drive_http(server.url, mixed, concurrency, warmup, cap, warmup=0)
        after_warmup = served.rss_bytes(pid)
        curve = [(0, after_warmup)]
        load = Load()
        for _ in range(chunks):
            left = cap - load.seconds
            chunk = drive_http(
                server.url, mixed, concurrency, plan.memory_requests // chunks, left, warmup=0
            )
            load.merge(chunk)
            curve.append((load.completed, served.rss_bytes(pid)))
            if chunk.capped or left <= 0:
                load.capped = True
                break
    ctx.memory = Memory(
        model=entry.name,
        at_ready=at_ready,
        after_warmup=after_warmup,
        after=curve[-1][1],
        warmup_requests=warmup,
        requests=load.completed,
        planned=plan.memory_requests,
        errors=load.errors,
        seconds=load.seconds,
        capped=load.capped,
        curve=curve,
        batching=batching,
    )
    m = ctx.memory
    ctx.log(
        f"resident memory: {m.at_ready / 2**20:.0f} MiB at ready, "
        f"{m.after_warmup / 2**20:.0f} MiB after {m.warmup_requests} warm-up requests, "
        f"{m.after / 2**20:.0f} MiB after {m.requests} more ({(m.growth - 1) * 100:+.1f} %)"
    )


# -- tracing, LiteRT ------------------------------------------------------------------------


def tracing_section(ctx: Context) -> None:
    """The classifier with tracing off and on, and what the off path's no-op calls cost
    (tests/bench/tracing_cost.py)."""
    from tests.bench import tracing_cost

    tracing_cost.section(ctx)


def litert_section(ctx: Context) -> None:
    """Start-up and memory against a bare LiteRT process, and the LiteRT part of the
    report (tests/bench/litert.py; its cells come from `measure_model`)."""
    from tests.bench import litert

    litert.section(ctx)


# -- the operator ----------------------------------------------------------------------------


def operator_section(ctx: Context) -> None:
    """Time from `kubectl apply` to Ready, and hundreds of zoos at once, on the kwok
    control plane (tests/cluster) with the operator as a local process."""
    from tests.bench.operator_bench import measure

    single, mass = (3, 20) if ctx.plan.quick else (20, 200)
    ctx.log(f"operator: {single} zoos one after another, then {mass} at once")
    figures = measure(single, mass, say=ctx.log)
    rows = [
        (
            f"`kubectl apply` → Ready, one zoo (p50 over {figures.single_runs})",
            "≤ 3 s",
            f"{figures.single_p50_s:.2f} s (max {figures.single_max_s:.2f} s)",
            figures.single_p50_s <= 3,
        ),
        (
            f"{figures.mass_zoos} zoos applied at once, all Ready",
            "≤ 60 s",
            f"{figures.mass_all_ready_s:.1f} s",
            figures.mass_all_ready_s <= 60,
        ),
        (
            "operator peak resident memory",
            "< 200 MiB",
            f"{figures.operator_peak_rss_mib:.0f} MiB",
            figures.operator_peak_rss_mib < 200,
        ),
    ]
    table = ["| measure | target | measured | result |", "|---|---|---|---|"]
    table += [f"| {m} | {t} | {v} | {'met' if ok else '**missed**'} |" for m, t, v, ok in rows]
    ctx.sections.append(
        Section(
            title="Operator",
            measured=True,
            text="The real control plane of the e2e tests (kube-apiserver, controller-manager, "
            "scheduler, etcd; kwok simulating 2 CPU and 2 GPU nodes and the pods' life "
            "cycle), the operator as a local process, one small CPU model per zoo. "
            "Ready is the zoo's `Ready` condition, written by the operator once the "
            "model's Deployment has its ready replicas.\n\n" + "\n".join(table),
        )
    )


def real_node_section(ctx: Context) -> None:
    """The cold path on the real node (tests/bench/real_node.py); the full run only: the
    `real` test tier runs the same measurement once, and a quick run stays in minutes."""
    if ctx.plan.quick:
        return
    from tests.bench import real_node

    real_node.section(ctx)


SECTIONS: tuple[Callable[[Context], None], ...] = (
    prepare_kserve,
    models_section,
    kserve_profile_section,
    memory_section,
    tracing_section,
    litert_section,
    operator_section,
    real_node_section,
)


def section_name(section: Callable[[Context], None]) -> str:
    """What `--sections` calls it: `models_section` is `models`."""
    return section.__name__.removesuffix("_section")


def run(ctx: Context, only: set[str] | None = None) -> None:
    """Every section in order, or only those named in `only`."""
    started = time.monotonic()
    for section in SECTIONS:
        if only is not None and section_name(section) not in only:
            ctx.skipped.append((f"section `{section_name(section)}`", "not in `--sections`"))
            continue
        section(ctx)
    ctx.log(f"measured {len(ctx.cells)} cells in {(time.monotonic() - started) / 60:.1f} min")


def stderr_log(started: float) -> Callable[[str], None]:
    def log(message: str) -> None:
        print(f"[bench {time.monotonic() - started:7.1f}s] {message}", file=sys.stderr, flush=True)

    return log


__all__ = ["CLASSIFIER", "SECTIONS", "Context", "Memory", "Section", "run"]
