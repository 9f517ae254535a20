"""Where KServe's time goes: py-spy inside its ModelServer while it answers the classifier.

For each KServe set-up (peers.KSERVE_SETUPS) one server of the classifier, a few warm-up
requests, then `REQUESTS[setup]` requests at concurrency 1 over the set-up's own wire,
every answer checked, with `py-spy record --pid` sampling the process meanwhile. py-spy
keeps a sample when a Python thread is active (running, or runnable on a busy machine);
TensorFlow's own native threads are not Python threads, so the graph's arithmetic shows
only as the calling thread's wait. The process's whole CPU time per request comes from
/proc, and the same figure for ModelZoo's server over the same gRPC requests puts the
tuned set-up's next to it. The report gets those, and per set-up the five functions with
the most samples of their own.
"""

from __future__ import annotations

import collections
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelzoo_models.contract import TENSORFLOW
from modelzoo_server.model_entry import RecordError, from_catalog
from modelzoo_server.tasks.image_classification import ImageClassification
from tests.bench import answers, inprocess, peers, served, venvs
from tests.bench.grpc_load import drive_grpc
from tests.bench.loadgen import Load, drive_http
from tests.bench.plan import CLASSIFIER, KSERVE_MODELS
from tests.bench.run import Context, Section
from tests.bench.workload import Workload, workload

TITLE = "Where KServe's time goes"
RATE_HZ = 200
REQUESTS = {peers.KSERVE_NAIVE: 60, peers.KSERVE_TUNED: 200}  # a few seconds each
OURS = f"ModelZoo, {peers.KSERVE_COUNTERPART}, batching off"
WARMUP = 8
CAP_S = 60.0
TOP = 5


class ProfileError(Exception):
    """py-spy could not sample the process (no ptrace permission, say)."""


@dataclass(frozen=True)
class Run:
    """One server's requests at concurrency 1 and the CPU time its process used."""

    label: str
    wire: str
    load: Load
    cpu_s: float  # utime + stime of all the process's threads over the load

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.load.latencies) * 1000

    @property
    def cpu_ms(self) -> float:
        """The process's CPU time per request."""
        return self.cpu_s / self.load.completed * 1000


@dataclass(frozen=True)
class Profile:
    run: Run
    tuned: bool
    samples: int  # py-spy's samples of active Python threads
    top: list[tuple[str, int]]  # (function (file:line), samples of its own), most first
    tensorflow: int  # samples with TensorFlow's Python on the stack (the graph call)

    def share(self, samples: int) -> float:
        return samples / self.samples if self.samples else 0.0

    def active_ms(self, samples: int) -> float:
        """Samples as milliseconds per request."""
        return samples / RATE_HZ / self.run.load.completed * 1000


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid`, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(pid: int, drive: Callable[[], Load]) -> tuple[Load, float]:
    """`drive()`'s load and the CPU seconds `pid` used meanwhile."""
    before = cpu_seconds(pid)
    load = drive()
    return load, cpu_seconds(pid) - before


def collapse(raw: str) -> tuple[int, collections.Counter[str], int]:
    """py-spy's raw output (one `frame;frame;…;leaf count` a line): total samples, samples
    per leaf, and samples with TensorFlow on the stack (in whichever thread calls it)."""
    total, own, tensorflow = 0, collections.Counter(), 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames, n = stack.split(";"), int(count)
        total += n
        own[frames[-1]] += n
        if any("tensorflow/" in f for f in frames):
            tensorflow += n
    return total, own, tensorflow


def record(py_spy: Path, pid: int, out: Path, drive: Callable[[], Load]) -> tuple[Load, float]:
    """Run `drive()` while py-spy samples `pid` into `out`; (its load, the CPU seconds)."""
    command = [str(py_spy), "record", "--pid", str(pid), "--rate", str(RATE_HZ)]
    spy = subprocess.Popen(
        [*command, "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # attached and sampling before the first counted request
    if spy.poll() is not None:
        raise ProfileError(f"py-spy exited at once: {spy.stderr.read().decode()[-500:]}")
    try:
        result = timed(pid, drive)
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            _, err = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.communicate()
            raise
    if not out.exists():
        raise ProfileError(f"py-spy wrote nothing: {err.decode()[-500:]}")
    return result


def _grpc(address: str, work: Workload, right: answers.Answers) -> Callable[[int, int], Load]:
    """(count, warm-up) → a closed loop at concurrency 1 over gRPC."""
    requests = work.grpc_requests(right)
    name = work.entry.name
    return lambda count, warm: drive_grpc(address, name, requests, 1, count, CAP_S, warm)


def _rest(url: str, work: Workload, right: answers.Answers) -> Callable[[int, int], Load]:
    """(count, warm-up) → a closed loop at concurrency 1 over REST V2, binary tensors."""
    requests = work.v2_requests(work.entry.name, right)
    return lambda count, warm: drive_http(url, requests, 1, count, CAP_S, warm)


def _checked(run: Run) -> Run:
    if run.load.errors:
        raise ProfileError(f"{run.label}: {run.load.errors} failed: {run.load.first_error}")
    return run


def profile(
    python: Path, work_dir: Path, setup: peers.KServeSetup, work: Workload, right: answers.Answers
) -> Profile:
    """One set-up's server, warmed up, then profiled over its requests."""
    slug = "tuned" if setup.tuned else "naive"
    log = work_dir / f"kserve-profile-{slug}.log"
    with peers.kserve_server(python, work.entry, log, setup) as server:
        drive = (
            _grpc(server.grpc_address, work, right)
            if setup.grpc
            else _rest(server.url, work, right)
        )
        drive(0, WARMUP)
        out = work_dir / f"kserve-profile-{slug}.txt"
        count = REQUESTS[setup]
        load, cpu = record(venvs.py_spy(python), server.pid, out, lambda: drive(count, 0))
    run = _checked(Run(setup.path, "gRPC" if setup.grpc else "REST V2", load, cpu))
    total, own, tensorflow = collapse(out.read_text())
    return Profile(run, setup.tuned, total, own.most_common(TOP), tensorflow)


def ours(ctx: Context, work: Workload, right: answers.Answers) -> Run:
    """ModelZoo's server as the tuned set-up's counterpart (TensorFlow, batching off) over
    the same gRPC requests."""
    log = ctx.work / "kserve-profile-modelzoo.log"
    flags = [*ctx.plan.batching_off, "--runtime", TENSORFLOW]
    with served.modelzoo_server(work.entry.name, ctx.model_dir, flags, log) as server:
        assert server.grpc_address is not None  # run_server gives it a gRPC port
        drive = _grpc(server.grpc_address, work, right)
        drive(0, WARMUP)
        count = REQUESTS[peers.KSERVE_TUNED]
        load, cpu = timed(server.process.pid, lambda: drive(count, 0))
    return _checked(Run(OURS, "gRPC", load, cpu))


INTRO = (
    "py-spy ({rate} Hz, `record --pid`) inside KServe's ModelServer process while it answers "
    "`{model}` at concurrency 1, each set-up on the wire of its cells, every answer checked; "
    "the process's CPU time from `/proc/<pid>/stat`, for ModelZoo's server too. KServe "
    "{version}'s REST decoder (`InferRequest.from_bytes`) reads a binary tensor and then calls "
    "`set_data_from_numpy(…, binary_data=False)` on it, which builds a Python list with one "
    "`.item()` per element (150,528 floats for mobilenet's 224×224×3 input, 786,432 for "
    "centernet's 512×512×3: why the naive set-up's latency grows with the input's size); "
    "`as_numpy` then builds the array back from that list. No flag or `predict` avoids it on "
    "REST. Its gRPC servicer keeps `raw_input_contents` as bytes (`np.frombuffer`), so the "
    "tuned set-up goes over gRPC and is compared with ModelZoo's gRPC endpoint: same client "
    "(`tritonclient.grpc.aio`), same encoding. py-spy keeps samples of active Python threads "
    "(running, or waiting for a core on this shared machine), so its milliseconds can exceed "
    "the CPU time; TensorFlow's arithmetic runs on native threads it does not sample."
)


def _summary(runs: list[Run]) -> str:
    rows = [
        "| server | wire | requests | p50 ms | process CPU ms per request |",
        "|---|---|---|---|---|",
    ]
    rows += [
        f"| {r.label} | {r.wire} | {r.load.completed} | {r.p50_ms:.1f} | {r.cpu_ms:.1f} |"
        for r in runs
    ]
    return "\n".join(rows)


def _top(p: Profile) -> str:
    rows = [
        f"**{p.run.label}**: {p.samples} samples, {p.active_ms(p.samples):.1f} ms active a "
        f"request, {p.share(p.tensorflow) * 100:.0f} % of them in TensorFlow's Python (the "
        "graph call), the rest in KServe's server, its libraries and the event loop.",
        "",
        "| function (file:line), own samples | share of samples | active ms per request |",
        "|---|---|---|",
    ]
    rows += [
        f"| `{frame}` | {p.share(count) * 100:.1f} % | {p.active_ms(count):.1f} |"
        for frame, count in p.top
    ]
    return "\n".join(rows)


def cause(profiles: list[Profile], mine: Run) -> str:
    """One sentence for the targets: CPU per request of each, and the naive one's sink."""
    parts = []
    for p in profiles:
        part = f"{p.run.label}: {p.run.cpu_ms:.0f} ms CPU a request"
        if not p.tuned and p.top:
            frame, count = p.top[0]
            part += f", {p.share(count) * 100:.0f} % of its samples in `{frame.split(' (')[0]}`"
        parts.append(part)
    parts.append(f"{mine.label}: {mine.cpu_ms:.0f} ms CPU a request")
    return "; ".join(parts)


def _reference(work: Workload) -> answers.Answers:
    loaded = inprocess.load(work, threads=2)
    try:
        top = loaded.task.output_name if isinstance(loaded.task, ImageClassification) else None
        return answers.reference(loaded.graph.run, work.feeds, top)
    finally:
        loaded.pool.shutdown()


def section(ctx: Context) -> None:
    """Profile both KServe set-ups on the classifier, and time ModelZoo's; under a minute."""
    python = ctx.kserve_python
    if CLASSIFIER not in ctx.plan.models or CLASSIFIER not in KSERVE_MODELS or python is None:
        return  # no KServe in this run: prepare_kserve said why
    try:
        work = workload(from_catalog(ctx.model_dir, CLASSIFIER))
    except RecordError as exc:
        ctx.skipped.append(("KServe profile", f"{CLASSIFIER} not in the catalog: {exc}"))
        return
    right = _reference(work)
    ctx.log(f"KServe profile: py-spy on {CLASSIFIER}, naive and tuned set-ups, then ModelZoo")
    try:
        profiles = [profile(python, ctx.work, s, work, right) for s in peers.KSERVE_SETUPS]
        mine = ours(ctx, work, right)
    except (ProfileError, RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as exc:
        ctx.skipped.append(("KServe profile", f"could not profile KServe: {exc}"))
        ctx.log(f"KServe profile failed: {exc}")
        return
    ctx.kserve_cause = cause(profiles, mine)
    ctx.log(f"KServe profile: {ctx.kserve_cause}")
    intro = INTRO.format(rate=RATE_HZ, model=CLASSIFIER, version=venvs.KSERVE_VERSION)
    runs = [*(p.run for p in profiles), mine]
    text = "\n\n".join([intro, _summary(runs), *(_top(p) for p in profiles)])
    ctx.sections.append(Section(title=TITLE, measured=True, text=text))
