"""LiteRT, the runtime the zoo entries with a verified `.tflite` are served on
(`--runtime auto`): its in-process ceiling, the same entries served on TensorFlow, and a
bare process that only runs the interpreter, for issue 13's targets.

- Ceiling: the entry's `.tflite` in a bare `ai_edge_litert` Interpreter in the bench
  process, batch 1, on the workload's tensors, for each thread count in THREADS and 1 or
  2 interpreters (each on its own thread: `invoke` releases the GIL); measured next to
  the raw TensorFlow graph (run.measure_model calls `ceiling`).
- Served on TensorFlow: the same entry with `--runtime tensorflow`, REST V2 only, at
  TF_CONCURRENCIES, one more path among the model's served cells (`tensorflow_servers`):
  batching on and off where the entry batches (the batcher runs on TensorFlow only; on
  LiteRT the model's one server has the default flags, batching off).
- Bare process: `python -c BARE` loads the `.tflite` into one interpreter with the CPU
  quota's threads (the issue's baseline: "a bare process that only loads the interpreter
  and runs it"), answers once, runs BARE_RUNS times in all and prints its VmRSS: what
  serving adds to memory and to the time from process start to the first answer. The
  same script with the interpreters the server's defaults make (--interpreters,
  --intra-op-threads, --lone-call-threads) shows how much of that the pool is: each
  interpreter packs its own copy of the weights.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from modelzoo_models.contract import AUTO, LITERT, MTCNN_NETS, TENSORFLOW, TFLITE
from modelzoo_server.cpu import available_cpus
from modelzoo_server.litert_mtcnn import LiteMtcnn
from modelzoo_server.model_entry import ModelEntry, RecordError, from_catalog
from modelzoo_server.runtimes import choose
from modelzoo_server.settings import parse_settings
from modelzoo_server.signature import FeedLimits, Signature
from tests.bench import served
from tests.bench.answers import Answers, WrongAnswer
from tests.bench.loadgen import Load, drive_threads
from tests.bench.plan import CLASSIFIER
from tests.bench.run import RAW1, Context, Section, cell_from_load, planned_requests
from tests.bench.stats import Cell
from tests.bench.workload import Workload
from tests.servers import RunningServer, free_port, stop

# 1 and 2 threads per interpreter and the CPU quota's, whatever the quota (the server's
# default is one single-threaded interpreter per CPU, modelzoo_server.settings).
THREADS = tuple(sorted({1, 2, available_cpus()}))
INTERPRETERS = (1, 2)
TF_CONCURRENCIES = (1, 16)
TF_SERVED = "served V2, runtime tensorflow"
# The comparable served paths: they carry the task's tensors, as the ceiling gets them
# (/infer decodes and preprocesses a JPEG first).
TENSOR_PATHS = ("served V2", "served gRPC")
BARE_RUNS = 100
STARTUP_RUNS = 3  # of the server and the two bare processes, alternating; medians count
STARTUP_TIMEOUT_S = 120.0


def ceiling_path(threads: int) -> str:
    return f"LiteRT interpreter, {threads} thread{'s' if threads > 1 else ''}"


CEILING_PATHS = tuple(ceiling_path(t) for t in THREADS)
# The ceiling's interpreter that a lone request runs on, again at concurrency 1 in the
# served cells' alternating slices (alone_job).
ALONE_PATH = "bare LiteRT interpreter, in the served slices"


@dataclass
class LiteRTFigures:
    """What the LiteRT parts measured beyond their cells."""

    entries: list[str] = field(default_factory=list)  # entries served on LiteRT, ceiling checked
    served: list[str] = field(default_factory=list)  # entries served on LiteRT (measure_model)
    # Per entry served on LiteRT: the threads a lone request runs on (the default server's);
    # per photo, its input tensors' bytes and its REST V2 body's.
    alone_threads: dict[str, int] = field(default_factory=dict)
    tensor_bytes: dict[str, list[int]] = field(default_factory=dict)
    v2_body_bytes: dict[str, list[int]] = field(default_factory=dict)
    # The bare process of the targets: one interpreter with the CPU quota's threads.
    bare_threads: int = 0
    bare_answer_s: list[float] = field(default_factory=list)  # Popen → first answer, per run
    bare_rss: list[int] = field(default_factory=list)  # VmRSS after BARE_RUNS runs, bytes
    # The bare process with the server's default pool, for comparison.
    threads: int = 0  # threads per interpreter (the server's default)
    interpreters: int = 0  # interpreters (the server's default)
    lone_threads: int = 0  # the interpreter for a lone call's threads (0: none)
    pool_answer_s: list[float] = field(default_factory=list)  # Popen → first answer, per run
    pool_rss: list[int] = field(default_factory=list)  # VmRSS after BARE_RUNS runs, bytes
    server_ready_s: list[float] = field(default_factory=list)  # Popen → ready, per run

    @property
    def pool_label(self) -> str:
        """The server's default pool in words: "2 interpreters × 1 thread + one of 2"."""
        each = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        text = f"{self.interpreters} interpreter{'s' if self.interpreters != 1 else ''} × {each}"
        return text + (
            f" + one of {self.lone_threads} for a lone call" if self.lone_threads else ""
        )

    @property
    def bare_label(self) -> str:
        return f"1 interpreter × {self.bare_threads} thread{'s' if self.bare_threads != 1 else ''}"


def served_on_litert(entry: ModelEntry) -> bool:
    """What the server's `--runtime auto` picks for this entry (runtimes.choose)."""
    return choose(entry, AUTO) == LITERT


def tflite_path(entry: ModelEntry) -> Path:
    artifact = entry.record.artifact(TFLITE)
    assert artifact is not None, "served_on_litert() holds only with a .tflite"
    return entry.path.parent / artifact.file  # artifacts lie next to each other


def figures(ctx: Context) -> LiteRTFigures:
    """The run's LiteRT figures, made on first use."""
    if ctx.litert is None:
        ctx.litert = LiteRTFigures()
    return ctx.litert


def best(cells: Sequence[Cell]) -> Cell | None:
    return max(cells, key=lambda c: c.images_per_s, default=None)


def best_ceiling(ctx: Context, model: str) -> Cell | None:
    return best([c for c in ctx.cells if c.model == model and c.path in CEILING_PATHS])


def best_served(ctx: Context, model: str) -> Cell | None:
    return best([c for c in ctx.cells if c.model == model and c.path in TENSOR_PATHS])


# -- the in-process ceiling -------------------------------------------------------------------


class _Interpreter:
    """A bare interpreter sized for the workload's tensors: set, invoke, get; no checks."""

    def __init__(
        self,
        path: Path,
        threads: int,
        signature: Signature,
        shapes: Mapping[str, tuple[int, ...]],
    ) -> None:
        self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        # The converter names a tensor after its graph node: "input:0" becomes "input".
        inputs = {d["name"]: d["index"] for d in self._interpreter.get_input_details()}
        outputs = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        self._inputs = [(s.name, inputs[s.tensor.removesuffix(":0")]) for s in signature.inputs]
        self._outputs = [(s.name, outputs[s.tensor.removesuffix(":0")]) for s in signature.outputs]
        for name, index in self._inputs:
            self._interpreter.resize_tensor_input(index, shapes[name])
        self._interpreter.allocate_tensors()

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, index in self._inputs:
            self._interpreter.set_tensor(index, feeds[name])
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(index) for name, index in self._outputs}


def _runner(
    entry: ModelEntry, threads: int, shapes: Mapping[str, tuple[int, ...]]
) -> _Interpreter | LiteMtcnn:
    """What runs the entry's `.tflite` at the ceiling: a bare interpreter, or for MTCNN
    (three networks in one flatbuffer, the pyramid and NMS in numpy) the server's own
    pipeline over one interpreter (modelzoo_server.litert_mtcnn)."""
    artifact = entry.record.artifact(TFLITE)
    if artifact is not None and artifact.pipeline == MTCNN_NETS:
        data = tflite_path(entry).read_bytes()
        return LiteMtcnn(data, entry.signature, FeedLimits(), threads)
    return _Interpreter(tflite_path(entry), threads, entry.signature, shapes)


def _job(
    interpreters: list[_Interpreter | LiteMtcnn], feeds: Sequence[Mapping[str, np.ndarray]]
) -> Callable[[int], None]:
    """One call of the closed loop: a free interpreter (as many as the loop's threads, so
    none ever waits) on the next photo's tensors."""
    free: queue.SimpleQueue[_Interpreter | LiteMtcnn] = queue.SimpleQueue()
    for interpreter in interpreters:
        free.put(interpreter)

    def work(index: int) -> None:
        interpreter = free.get()
        try:
            interpreter.run(feeds[index % len(feeds)])
        finally:
            free.put(interpreter)

    return work


def _c_order(work: Workload) -> list[dict[str, np.ndarray]]:
    # np.require keeps a 0-d scalar 0-d (np.ascontiguousarray makes it 1-d).
    return [{k: np.require(v, requirements="C") for k, v in f.items()} for f in work.feeds]


def alone_job(work: Workload, threads: int, per_slice: int, cap: float) -> Callable[[bool], Load]:
    """The bare interpreter that a lone request runs on (1 × `threads`), as a job of the
    served cells' alternating slices (`ALONE_PATH`): a lone request's baseline, measured
    side by side with it rather than minutes before."""
    feeds = _c_order(work)
    runner = _runner(work.entry, threads, {n: v.shape for n, v in feeds[0].items()})
    job = _job([runner], feeds)
    return lambda first: drive_threads(job, 1, per_slice, cap, 1 if first else 0)


def ceiling(ctx: Context, work: Workload, right: Answers, raw1: Cell) -> None:
    """The LiteRT ceiling of an entry served on LiteRT: every (threads, interpreters)
    configuration in `plan.slices` alternating slices, as cells beside the raw graph's."""
    entry, plan = work.entry, ctx.plan
    if not served_on_litert(entry):
        return
    feeds = _c_order(work)
    shapes = {name: value.shape for name, value in feeds[0].items()}
    configs = {
        (threads, count): [_runner(entry, threads, shapes) for _ in range(count)]
        for threads in THREADS
        for count in INTERPRETERS
    }
    try:  # a fast wrong answer is no ceiling: the raw graph's answers, as the server's are
        for interpreters in configs.values():
            for index, photo in enumerate(feeds):
                right.check(index, interpreters[0].run(photo))
    except WrongAnswer as exc:
        ctx.skipped.append((f"{entry.name}, LiteRT ceiling", f"not the raw graph's answer: {exc}"))
        return
    figures(ctx).entries.append(entry.name)
    jobs, counts = {}, {}
    for (threads, count), interpreters in configs.items():
        probe = time.perf_counter()
        interpreters[0].run(feeds[0])
        rate = 1 / max(time.perf_counter() - probe, 1e-4)
        counts[threads, count] = math.ceil(planned_requests(plan, rate, count) / plan.slices)
        jobs[threads, count] = _job(interpreters, feeds)
    ctx.log(
        f"{entry.name}, LiteRT interpreter: threads {THREADS} × interpreters {INTERPRETERS}, "
        f"{plan.slices} alternating slices"
    )
    loads = {key: Load() for key in jobs}
    cap = plan.cell_cap_seconds / plan.slices
    for index in range(plan.slices):
        for (threads, count), job in jobs.items():
            warmup = count if index == 0 else 0
            loads[threads, count].merge(
                drive_threads(job, count, counts[threads, count], cap, warmup)
            )
    for (threads, count), load in loads.items():
        planned = counts[threads, count] * plan.slices
        cell = cell_from_load(entry.name, ceiling_path(threads), "n/a", count, planned, load)
        ctx.add(cell, raw1, RAW1)


# -- the same entry served on TensorFlow ------------------------------------------------------


def tensorflow_servers(
    ctx: Context,
    entry: ModelEntry,
    configs: Sequence[tuple[str, Sequence[str]]],
    stack: contextlib.ExitStack,
) -> dict[str, RunningServer]:
    """For an entry served on LiteRT: the server again with `--runtime tensorflow`, one per
    (batching label, flags) of `configs` (on and off where the entry batches: the batcher
    runs there), up until `stack` closes; {} for an entry served on TensorFlow."""
    if not served_on_litert(entry):
        return {}
    running = {}
    for batching, flags in configs:
        slug = batching.replace("/", "")
        log = ctx.work / f"server-{entry.name}-runtime-tensorflow-batching-{slug}.log"
        try:
            running[batching] = stack.enter_context(
                served.modelzoo_server(
                    entry.name, ctx.model_dir, [*flags, "--runtime", TENSORFLOW], log
                )
            )
        except (RuntimeError, TimeoutError, OSError) as exc:
            what = f"{entry.name} served on TensorFlow, batching {batching}"
            ctx.skipped.append((what, f"no server: {exc}"))
            ctx.log(f"server for {entry.name} on TensorFlow (batching {batching}) failed: {exc}")
    return running


# -- the bare process: memory and start-up ------------------------------------------------------

# Loads the .tflite as the server does (its interpreters and their threads, free dimensions
# at 1), runs them in turn, prints "answered" after the first run and its VmRSS after the
# last. `-P`: nothing from the repository on sys.path, only the venv's packages.
BARE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter

path, threads, runs, count, lone = sys.argv[1], *map(int, sys.argv[2:6])
interpreters = [Interpreter(model_path=path, num_threads=threads) for _ in range(count)]
interpreters += [Interpreter(model_path=path, num_threads=lone)] if lone else []
for interpreter in interpreters:
    for d in interpreter.get_input_details():
        interpreter.resize_tensor_input(d["index"], [max(n, 1) for n in d["shape_signature"]])
    interpreter.allocate_tensors()
for run in range(runs):
    interpreter = interpreters[run % len(interpreters)]
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    interpreter.invoke()
    for d in interpreter.get_output_details():
        interpreter.get_tensor(d["index"])
    if run == 0:
        print("answered", flush=True)
status = open("/proc/self/status").read().splitlines()
print("rss", int(next(s for s in status if s.startswith("VmRSS:")).split()[1]) * 1024)
"""


def bare_process(
    path: Path, threads: int, log: Path, interpreters: int = 1, lone_threads: int = 0
) -> tuple[float, int]:
    """(seconds from Popen to its first answer, VmRSS in bytes after BARE_RUNS runs)."""
    command = [sys.executable, "-P", "-c", BARE, str(path), str(threads), str(BARE_RUNS)]
    command += [str(interpreters), str(lone_threads)]
    with log.open("ab") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    assert process.stdout is not None
    with process.stdout:
        first = process.stdout.readline()
        answered = time.perf_counter() - started
        rest = process.stdout.read().split()
    if process.wait() != 0 or first.strip() != "answered" or rest[:1] != ["rss"]:
        raise RuntimeError(f"the bare LiteRT process failed ({process.returncode}): see {log}")
    return answered, int(rest[1])


def _answers_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1) as response:
            return response.status == 200
    except OSError:  # not listening yet, or 503 while loading
        return False


def server_ready(ctx: Context, zoo: str, log: Path) -> float:
    """Seconds from Popen of the server (default flags) to its first 200 on readiness."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "modelzoo_server", "--zoo", zoo]
    command += ["--model-dir", str(ctx.model_dir), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--grpc-port", str(free_port())]  # never the default, which may be taken
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with log.open("ab") as sink:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        while not _answers_ready(url):
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: see {log}")
            if time.perf_counter() - started > STARTUP_TIMEOUT_S:
                raise TimeoutError(f"server not ready after {STARTUP_TIMEOUT_S:.0f}s: see {log}")
            time.sleep(0.01)
        return time.perf_counter() - started
    finally:
        stop(process, grace=30)


def startup(ctx: Context, entry: ModelEntry) -> None:
    """STARTUP_RUNS rounds of server, bare process (one interpreter with the CPU quota's
    threads: the targets' baseline), bare process with the server's pool; one process at
    a time."""
    found = figures(ctx)
    found.bare_threads = available_cpus()
    defaults = parse_settings(["--zoo", entry.name], env={})  # the server's defaults
    found.threads, found.interpreters = defaults.interpreter_threads, defaults.interpreters
    found.lone_threads = defaults.lone_call_threads
    ctx.log(
        f"== LiteRT start-up and memory: {STARTUP_RUNS} × (server, bare process with "
        f"{found.bare_label}, bare process with the server's pool: {found.pool_label})"
    )
    path = tflite_path(entry)
    for _ in range(STARTUP_RUNS):
        found.server_ready_s.append(server_ready(ctx, entry.name, ctx.work / "startup-server.log"))
        answered, rss = bare_process(path, found.bare_threads, ctx.work / "bare.log")
        found.bare_answer_s.append(answered)
        found.bare_rss.append(rss)
        answered, rss = bare_process(
            path, found.threads, ctx.work / "bare-pool.log", found.interpreters, found.lone_threads
        )
        found.pool_answer_s.append(answered)
        found.pool_rss.append(rss)
    ctx.log(
        f"start → ready: server {statistics.median(found.server_ready_s):.2f}s, bare first "
        f"answer {statistics.median(found.bare_answer_s):.2f}s (pool "
        f"{statistics.median(found.pool_answer_s):.2f}s); bare VmRSS "
        f"{statistics.median(found.bare_rss) / 2**20:.0f} MiB (pool "
        f"{statistics.median(found.pool_rss) / 2**20:.0f} MiB)"
    )


# -- the report's section ------------------------------------------------------------------------


def runtime_pairs(ctx: Context, model: str) -> dict[int, tuple[Cell | None, Cell | None]]:
    """Per concurrency in TF_CONCURRENCIES: (served V2 on LiteRT, on TensorFlow) with the
    same batching label: off (both servers with the default flags), or n/a where the model
    does not batch. TensorFlow with batching on: `tensorflow_batched`."""
    pairs = {}
    for c in TF_CONCURRENCIES:
        pair: tuple[Cell | None, Cell | None] = (None, None)
        for batching in ("off", "n/a"):
            pair = (
                ctx.find(model, "served V2", batching, c),
                ctx.find(model, TF_SERVED, batching, c),
            )
            if any(cell is not None for cell in pair):
                break
        pairs[c] = pair
    return pairs


def tensorflow_batched(ctx: Context, model: str, concurrency: int) -> Cell | None:
    """The entry served on TensorFlow with batching on, where measured."""
    return ctx.find(model, TF_SERVED, "on", concurrency)


def section(ctx: Context) -> None:
    """Start-up and memory of the classifier's server against the bare process, then the
    report's LiteRT part (the ceilings and TensorFlow cells come from the models' run)."""
    try:
        entry = from_catalog(ctx.model_dir, CLASSIFIER) if CLASSIFIER in ctx.plan.models else None
    except RecordError as exc:
        entry = None
        ctx.skipped.append(("LiteRT start-up and memory", f"{CLASSIFIER}: {exc}"))
    if entry is None or not served_on_litert(entry):
        why = f"{CLASSIFIER} is not in this run's models, or not served on LiteRT"
        ctx.skipped.append(("LiteRT start-up and bare-process memory", why))
    else:
        try:
            startup(ctx, entry)
        except (RuntimeError, TimeoutError, OSError) as exc:
            ctx.skipped.append(("LiteRT start-up and bare-process memory", str(exc)))
    ctx.sections.append(Section(title="LiteRT", measured=True, text=describe(ctx)))


def _table(header: Sequence[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def config_label(cell: Cell) -> str:
    """A ceiling cell's configuration: "2 threads × 1 interpreter"."""
    interpreters = f"{cell.concurrency} interpreter{'s' if cell.concurrency > 1 else ''}"
    return f"{cell.path.removeprefix('LiteRT interpreter, ')} × {interpreters}"


def client_cores(cell: Cell) -> str:
    """The bench process's CPU over the cell, in cores (the load generator's, for a
    served cell)."""
    return f"{cell.client_cpu_seconds / cell.seconds:.2f}" if cell.seconds > 0 else "nan"


def _ceiling_rows(ctx: Context, entries: list[str]) -> list[list[str]]:
    rows = []
    for model in entries:
        top, raw1 = best_ceiling(ctx, model), ctx.find(model, "raw graph", "n/a", 1, 1)
        fastest = best_served(ctx, model)
        if top is None or raw1 is None:
            continue
        row = [model, f"{top.images_per_s:.1f} ({config_label(top)})"]
        row += [f"{raw1.images_per_s:.1f}", ratio(top.images_per_s, raw1.images_per_s)]
        if fastest is None:
            rows.append([*row, "—", "—", "—"])
            continue
        where = f"{fastest.path}, concurrency {fastest.concurrency}, batching {fastest.batching}"
        share = fastest.images_per_s / top.images_per_s if top.images_per_s > 0 else math.nan
        row += [f"{fastest.images_per_s:.1f} ({where})", f"{share * 100:.1f} %"]
        rows.append([*row, client_cores(fastest)])
    return rows


def _runtime_rows(ctx: Context, entries: list[str]) -> list[list[str]]:
    rows = []
    for model in entries:
        for c, (lite, tensorflow) in runtime_pairs(ctx, model).items():
            if lite is None or tensorflow is None:
                continue
            batched = tensorflow_batched(ctx, model, c)
            rows.append(
                [
                    model,
                    str(c),
                    lite.batching,
                    f"{lite.images_per_s:.1f}",
                    f"{tensorflow.images_per_s:.1f}",
                    ratio(lite.images_per_s, tensorflow.images_per_s),
                    f"{lite.p(50):.1f} / {tensorflow.p(50):.1f}",
                    "—" if batched is None else f"{batched.images_per_s:.1f}",
                    "—" if batched is None else ratio(lite.images_per_s, batched.images_per_s),
                ]
            )
    return rows


def ratio(mine: float, theirs: float, digits: int = 2) -> str:
    """mine ÷ theirs as "1.23×", "nan×" where theirs is no number to divide by."""
    ok = theirs > 0 and not math.isnan(theirs) and not math.isnan(mine)
    return f"{mine / theirs:.{digits}f}×" if ok else "nan×"


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _startup_text(ctx: Context, found: LiteRTFigures) -> str:
    if not found.server_ready_s:
        return "Start-up and the bare process's memory were not measured in this run."
    ready, answer, pool = found.server_ready_s, found.bare_answer_s, found.pool_answer_s
    rss, pool_rss = _median(found.bare_rss), _median(found.pool_rss)
    rows = [
        [
            f"`{CLASSIFIER}` server, default flags",
            "Popen → first 200 on `/v2/health/ready`",
            f"{_median(ready):.2f} s",
            ", ".join(f"{s:.2f}" for s in ready),
            "—",
        ],
        [
            f"bare process, {found.bare_label} (the targets' baseline)",
            "Popen → first answer",
            f"{_median(answer):.2f} s",
            ", ".join(f"{s:.2f}" for s in answer),
            f"{rss / 2**20:.0f}",
        ],
        [
            f"bare process, the server's pool: {found.pool_label}",
            "Popen → first answer",
            f"{_median(pool):.2f} s",
            ", ".join(f"{s:.2f}" for s in pool),
            f"{pool_rss / 2**20:.0f}",
        ],
    ]
    text = (
        f"`{CLASSIFIER}`'s server with its default flags (it serves on LiteRT), started "
        "from nothing, its readiness polled every 10 ms, against a bare process "
        f"(`python -P -c BARE`, tests/bench/litert.py) that imports `ai_edge_litert`, loads "
        f"the same `.tflite` into one interpreter with the CPU quota's {found.bare_threads} "
        "thread(s) (the issue's baseline: a process that only loads the interpreter and "
        "runs it; the memory and start-up targets divide by it), runs it on zeros, prints "
        f"a line after its first answer, then runs {BARE_RUNS} times in all and prints its "
        "VmRSS. The same script with the server's default pool "
        f"({found.pool_label}, run in turn) shows what the pool itself costs. "
        f"{len(ready)} of each, one process at a time, server, bare, bare pool "
        "alternating; medians.\n\n"
        + _table(("process", "from → to", "median", "each run (s)", "VmRSS MiB (median)"), rows)
    )
    memory = ctx.memory
    if memory is not None and memory.model == CLASSIFIER:
        text += (
            f"\n\nMemory: the served model's VmRSS after {memory.warmup_requests:,} warm-up "
            f"and {memory.requests:,} more requests (the resident-memory section: "
            f"{memory.batching}; concurrency 16) is {memory.after / 2**20:.0f} MiB: "
            f"{ratio(memory.after, rss)} the bare process with {found.bare_label} "
            f"({rss / 2**20:.0f} MiB, the target's baseline), {ratio(memory.after, pool_rss)} "
            f"the bare process with the server's pool ({pool_rss / 2**20:.0f} MiB). The two "
            "differ because each interpreter packs its own copy of the weights (XNNPACK), "
            f"so the pool's bare process already holds {ratio(pool_rss, rss)} the single "
            "interpreter's memory. At ready, before any request, the server had "
            f"{memory.at_ready / 2**20:.0f} MiB ({ratio(memory.at_ready, rss)} and "
            f"{ratio(memory.at_ready, pool_rss)})."
        )
    return text


def describe(ctx: Context) -> str:
    entries = ctx.litert.entries if ctx.litert is not None else []
    threads = " or ".join(str(t) for t in THREADS)
    interpreters = " or ".join(str(n) for n in INTERPRETERS)
    parts = [
        "Entries with a verified `.tflite` are served on LiteRT (`--runtime auto`); "
        f"this run measured {', '.join(f'`{e}`' for e in entries) or 'none of them'}.",
        "**Ceiling.** The entry's `.tflite` in a bare `ai_edge_litert` Interpreter in the "
        f"bench process, batch 1, on the workload's tensors: {threads} interpreter threads "
        f"× {interpreters} interpreters (each driven by its own thread, closed loop), in "
        "alternating slices right after the raw graph (their rows in the measurements "
        "table, divided by the raw TensorFlow graph at batch 1). Before measuring, each "
        "configuration's answers are checked against the raw graph's. For `mtcnn` (three "
        "networks in one `.tflite`, the pyramid, crops and NMS in numpy) the interpreter is "
        "the server's own pipeline over one interpreter (`LiteMtcnn`). Served: the best "
        "images/s of the paths that carry the task's tensors (REST V2, gRPC), at any "
        "concurrency and batching. The load generator's share of the machine is the bench "
        "process's CPU time over that cell (`time.process_time`, every thread of the "
        "process), in cores.",
        _table(
            (
                "entry",
                "LiteRT ceiling images/s (best configuration)",
                "raw TensorFlow graph, batch 1",
                "ceiling ÷ raw TensorFlow",
                "best served images/s",
                "served ÷ ceiling",
                "load generator, cores",
            ),
            _ceiling_rows(ctx, entries),
        ),
        "**Alone, at concurrency 1** (two targets per entry, each needing the served p50 "
        "within max(1 ms, 10 %)). Served REST V2 (the default server) against 1 bare "
        "interpreter with the threads the default server gives a request that comes alone "
        f"(its lone-call interpreter's: the CPU quota's), on the same tensors, measured in "
        f"the served cells' alternating slices (`{ALONE_PATH}`) so that both see the same "
        "machine; the target also gives the input tensors' and the REST V2 body's bytes, as "
        "the gap grows with them, and where the served request's mean time went, from the "
        "server's own `/metrics` over the cell (its handler's and its model call's "
        "histograms): outside the handler (HTTP on both sides, the client), in the handler "
        "around the model call, the call itself. Served `/infer` against the in-process "
        "pipeline on LiteRT "
        "(`in-process, LiteRT`): the server's own decode, preprocess, LiteRT model "
        "(`runtimes.load_runtime` with the server's default pool for this CPU quota, which "
        "runs a lone call as the server does) and postprocess in the bench process, one "
        "image at a time, at concurrency 1 only, in the same alternating slices as the "
        "served cells.",
        "**Served on LiteRT ÷ on TensorFlow.** The default server (LiteRT, which never "
        "batches: batching off, or n/a where the entry cannot batch) against the same entry "
        "served with `--runtime tensorflow` and the same batching label (both servers with "
        "the default flags), REST V2 with checked answers, in the same alternating slices "
        "as the model's other served cells. Where the entry batches, TensorFlow also ran "
        f"with batching on (`{' '.join(ctx.plan.batching_on)}`): the last two columns "
        "(— where not measured); its on ÷ off is in the dynamic batching table.",
        _table(
            (
                "entry",
                "concurrency",
                "batching",
                "LiteRT images/s",
                "TensorFlow images/s",
                "LiteRT ÷ TensorFlow",
                "p50 ms, LiteRT / TensorFlow",
                "TensorFlow, batching on, images/s",
                "LiteRT ÷ TensorFlow batching on",
            ),
            _runtime_rows(ctx, entries),
        ),
        "**Start-up and memory.** " + _startup_text(ctx, ctx.litert or LiteRTFigures()),
    ]
    return "\n\n".join(parts)
