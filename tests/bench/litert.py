"""LiteRT, the runtime the zoo entries with a verified `.tflite` are served on
(`--runtime auto`): its in-process ceiling, the same entries served on TensorFlow, and a
bare process that only runs the interpreter, for issue 13's targets.

- Ceiling: the entry's `.tflite` in a bare `ai_edge_litert` Interpreter in the bench
  process, batch 1, on the workload's tensors, for each thread count in THREADS and 1 or
  2 interpreters (each on its own thread: `invoke` releases the GIL); measured next to
  the raw TensorFlow graph (run.measure_model calls `ceiling`).
- Served on TensorFlow: the same entry with `--runtime tensorflow`, REST V2 only, at
  TF_CONCURRENCIES, one more path among the model's served cells (`tensorflow_server`).
- Bare process: `python -c BARE` loads the `.tflite` with the server's interpreter thread
  count, answers once, runs BARE_RUNS times in all and prints its VmRSS: what serving
  adds to memory and to the time from process start to the first answer.
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

from modelzoo_models.contract import AUTO, LITERT, TENSORFLOW, TFLITE
from modelzoo_server.cpu import available_cpus
from modelzoo_server.model_entry import ModelEntry, RecordError, from_catalog
from modelzoo_server.runtimes import choose
from modelzoo_server.signature import Signature
from tests.bench import served
from tests.bench.answers import Answers, WrongAnswer
from tests.bench.loadgen import Load, drive_threads
from tests.bench.plan import CLASSIFIER
from tests.bench.run import RAW1, Context, Section, cell_from_load, planned_requests
from tests.bench.stats import Cell
from tests.bench.workload import Workload
from tests.servers import RunningServer, free_port, stop

# The server gives its interpreter the CPU quota's threads (--intra-op-threads); 1 and 2
# are tried too, whatever the quota.
THREADS = tuple(sorted({1, 2, available_cpus()}))
INTERPRETERS = (1, 2)
TF_CONCURRENCIES = (1, 16)
TF_SERVED = "served V2, runtime tensorflow"
# The comparable served paths: they carry the task's tensors, as the ceiling gets them
# (/infer decodes and preprocesses a JPEG first).
TENSOR_PATHS = ("served V2", "served gRPC")
BARE_RUNS = 100
STARTUP_RUNS = 3  # of the server and of the bare process, alternating; the median counts
STARTUP_TIMEOUT_S = 120.0


def ceiling_path(threads: int) -> str:
    return f"LiteRT interpreter, {threads} thread{'s' if threads > 1 else ''}"


CEILING_PATHS = tuple(ceiling_path(t) for t in THREADS)


@dataclass
class LiteRTFigures:
    """What the LiteRT parts measured beyond their cells."""

    entries: list[str] = field(default_factory=list)  # entries served on LiteRT, measured
    threads: int = 0  # the bare process's interpreter threads (the server's default)
    server_ready_s: list[float] = field(default_factory=list)  # Popen → ready, per run
    bare_answer_s: list[float] = field(default_factory=list)  # Popen → first answer, per run
    bare_rss: list[int] = field(default_factory=list)  # VmRSS after BARE_RUNS runs, bytes


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


def _job(
    interpreters: list[_Interpreter], feeds: Sequence[Mapping[str, np.ndarray]]
) -> Callable[[int], None]:
    """One call of the closed loop: a free interpreter (as many as the loop's threads, so
    none ever waits) on the next photo's tensors."""
    free: queue.SimpleQueue[_Interpreter] = queue.SimpleQueue()
    for interpreter in interpreters:
        free.put(interpreter)

    def work(index: int) -> None:
        interpreter = free.get()
        try:
            interpreter.run(feeds[index % len(feeds)])
        finally:
            free.put(interpreter)

    return work


def ceiling(ctx: Context, work: Workload, right: Answers, raw1: Cell) -> None:
    """The LiteRT ceiling of an entry served on LiteRT: every (threads, interpreters)
    configuration in `plan.slices` alternating slices, as cells beside the raw graph's."""
    entry, plan = work.entry, ctx.plan
    if not served_on_litert(entry):
        return
    feeds = [{k: np.ascontiguousarray(v) for k, v in f.items()} for f in work.feeds]
    shapes = {name: value.shape for name, value in feeds[0].items()}
    configs = {
        (threads, count): [
            _Interpreter(tflite_path(entry), threads, entry.signature, shapes) for _ in range(count)
        ]
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


def tensorflow_server(
    ctx: Context, entry: ModelEntry, flags: Sequence[str], stack: contextlib.ExitStack
) -> RunningServer | None:
    """For an entry served on LiteRT: the server again with `--runtime tensorflow` and
    `flags` (the default cells' batching), up until `stack` closes; else None."""
    if not served_on_litert(entry):
        return None
    log = ctx.work / f"server-{entry.name}-runtime-tensorflow.log"
    try:
        return stack.enter_context(
            served.modelzoo_server(
                entry.name, ctx.model_dir, [*flags, "--runtime", TENSORFLOW], log
            )
        )
    except (RuntimeError, TimeoutError, OSError) as exc:
        ctx.skipped.append((f"{entry.name} served on TensorFlow", f"no server: {exc}"))
        ctx.log(f"server for {entry.name} on TensorFlow failed: {exc}")
        return None


# -- the bare process: memory and start-up ------------------------------------------------------

# Loads the .tflite as the server does (its thread count, free dimensions at 1), prints
# "answered" after the first run and its VmRSS after the last. `-P`: nothing from the
# repository on sys.path, only the venv's packages.
BARE = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter

path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
interpreter = Interpreter(model_path=path, num_threads=threads)
for d in interpreter.get_input_details():
    interpreter.resize_tensor_input(d["index"], [max(n, 1) for n in d["shape_signature"]])
interpreter.allocate_tensors()
inputs = [(d["index"], np.zeros(d["shape"], d["dtype"])) for d in interpreter.get_input_details()]
for run in range(runs):
    for index, value in inputs:
        interpreter.set_tensor(index, value)
    interpreter.invoke()
    for d in interpreter.get_output_details():
        interpreter.get_tensor(d["index"])
    if run == 0:
        print("answered", flush=True)
status = open("/proc/self/status").read().splitlines()
print("rss", int(next(s for s in status if s.startswith("VmRSS:")).split()[1]) * 1024)
"""


def bare_process(path: Path, threads: int, log: Path) -> tuple[float, int]:
    """(seconds from Popen to its first answer, VmRSS in bytes after BARE_RUNS runs)."""
    command = [sys.executable, "-P", "-c", BARE, str(path), str(threads), str(BARE_RUNS)]
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
    """STARTUP_RUNS pairs, server then bare process, one process at a time."""
    found = figures(ctx)
    found.threads = available_cpus()  # the server's default --intra-op-threads
    ctx.log(f"== LiteRT start-up and memory: {STARTUP_RUNS} × (server, bare process)")
    for _ in range(STARTUP_RUNS):
        found.server_ready_s.append(server_ready(ctx, entry.name, ctx.work / "startup-server.log"))
        answered, rss = bare_process(tflite_path(entry), found.threads, ctx.work / "bare.log")
        found.bare_answer_s.append(answered)
        found.bare_rss.append(rss)
    ctx.log(
        f"start → ready: server {statistics.median(found.server_ready_s):.2f}s, bare first "
        f"answer {statistics.median(found.bare_answer_s):.2f}s; bare VmRSS "
        f"{statistics.median(found.bare_rss) / 2**20:.0f} MiB"
    )


# -- the report's section ------------------------------------------------------------------------


def runtime_pairs(ctx: Context, model: str) -> dict[int, tuple[Cell | None, Cell | None]]:
    """Per concurrency in TF_CONCURRENCIES: (served V2 on LiteRT, on TensorFlow), with the
    batching `tensorflow_server` serves it with (on, or n/a where the model does not batch)."""
    pairs = {}
    for c in TF_CONCURRENCIES:
        for batching in ("on", "n/a"):
            tensorflow = ctx.find(model, TF_SERVED, batching, c)
            if tensorflow is not None:
                break
        pairs[c] = (ctx.find(model, "served V2", batching, c), tensorflow)
    return pairs


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
        row += [f"{raw1.images_per_s:.1f}", f"{top.images_per_s / raw1.images_per_s:.2f}×"]
        if fastest is None:
            rows.append([*row, "—", "—", "—"])
            continue
        where = f"{fastest.path}, concurrency {fastest.concurrency}, batching {fastest.batching}"
        share = fastest.images_per_s / top.images_per_s
        row += [f"{fastest.images_per_s:.1f} ({where})", f"{share * 100:.1f} %"]
        rows.append([*row, client_cores(fastest)])
    return rows


def _runtime_rows(ctx: Context, entries: list[str]) -> list[list[str]]:
    rows = []
    for model in entries:
        for c, (lite, tensorflow) in runtime_pairs(ctx, model).items():
            if lite is None or tensorflow is None:
                continue
            rows.append(
                [
                    model,
                    str(c),
                    lite.batching,
                    f"{lite.images_per_s:.1f}",
                    f"{tensorflow.images_per_s:.1f}",
                    f"{lite.images_per_s / tensorflow.images_per_s:.2f}×",
                    f"{lite.p(50):.1f} / {tensorflow.p(50):.1f}",
                ]
            )
    return rows


def _startup_text(ctx: Context, found: LiteRTFigures) -> str:
    if not found.server_ready_s:
        return "Start-up and the bare process's memory were not measured in this run."
    ready, answer = found.server_ready_s, found.bare_answer_s
    rss = statistics.median(found.bare_rss)
    rows = [
        [
            f"`{CLASSIFIER}` server, default flags",
            "Popen → first 200 on `/v2/health/ready`",
            f"{statistics.median(ready):.2f} s",
            ", ".join(f"{s:.2f}" for s in ready),
        ],
        [
            "bare interpreter process",
            "Popen → first answer",
            f"{statistics.median(answer):.2f} s",
            ", ".join(f"{s:.2f}" for s in answer),
        ],
    ]
    text = (
        f"`{CLASSIFIER}`'s server with its default flags (it serves on LiteRT), started "
        "from nothing, its readiness polled every 10 ms, against a bare process "
        f"(`python -P -c BARE`, tests/bench/litert.py) that imports `ai_edge_litert`, loads "
        f"the same `.tflite` with {found.threads} interpreter threads (the server's "
        "default), runs it on zeros and prints a line after its first answer, then runs it "
        f"{BARE_RUNS} times in all and prints its VmRSS. {len(ready)} of each, one process "
        "at a time, server and bare process alternating; medians.\n\n"
        + _table(("process", "from → to", "median", "each run (s)"), rows)
    )
    memory = ctx.memory
    if memory is not None and memory.model == CLASSIFIER:
        text += (
            f"\n\nMemory: the served model's VmRSS after {memory.warmup_requests:,} warm-up "
            f"and {memory.requests:,} more requests (the resident-memory section: batching "
            f"on, concurrency 16) is {memory.after / 2**20:.0f} MiB, the bare process's "
            f"{rss / 2**20:.0f} MiB (median): {memory.after / rss:.2f}×. At ready, before any "
            f"request, the server had {memory.at_ready / 2**20:.0f} MiB "
            f"({memory.at_ready / rss:.2f}×)."
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
        "configuration's answers are checked against the raw graph's. Served: the best "
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
        "**Served on LiteRT ÷ on TensorFlow.** The default server (LiteRT) against the same "
        "entry served with `--runtime tensorflow` and the same batching flags, REST V2 with "
        "checked answers, in the same alternating slices as the model's other served cells.",
        _table(
            (
                "entry",
                "concurrency",
                "batching",
                "LiteRT images/s",
                "TensorFlow images/s",
                "LiteRT ÷ TensorFlow",
                "p50 ms, LiteRT / TensorFlow",
            ),
            _runtime_rows(ctx, entries),
        ),
        "**Start-up and memory.** " + _startup_text(ctx, ctx.litert or LiteRTFigures()),
    ]
    return "\n\n".join(parts)
