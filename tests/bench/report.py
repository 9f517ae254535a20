"""The report: `docs/benchmarks.md` (tables of ratios) and `docs/benchmarks.png` (a plot)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from tests.bench.inprocess import LITERT_PATH, TENSORFLOW_PATH
from tests.bench.litert import ALONE_PATH, CEILING_PATHS, TF_CONCURRENCIES, TF_SERVED
from tests.bench.peers import KSERVE_COUNTERPART, KSERVE_NAIVE, KSERVE_TUNED
from tests.bench.run import Context
from tests.bench.stats import Cell
from tests.bench.targets import Target, batching_gains
from tests.bench.tracing_cost import OFF, ON

# The measurements table's columns: the smoke test reads them back.
COLUMNS = (
    "model",
    "path",
    "wire",
    "batching",
    "concurrency",
    "batch",
    "images per graph call",
    "requests",
    "images/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "baseline",
    "images/s ÷ baseline",
    "p50 ÷ baseline",
    "p99 ÷ baseline",
)
RATIO_COLUMNS = COLUMNS[-3:]
MEASUREMENTS_HEADING = "## Measurements"

PATH_ORDER = (
    "raw graph",
    *CEILING_PATHS,
    TENSORFLOW_PATH,
    LITERT_PATH,
    ALONE_PATH,
    "served /infer",
    "served V2",
    "served gRPC",
    TF_SERVED,
    OFF,
    ON,
    "mtcnn package",
    KSERVE_COUNTERPART,
    KSERVE_NAIVE.path,
    KSERVE_TUNED.path,
)

# How each path's tensors or images travel (the measurements table's "wire" column).
WIRE = {
    "raw graph": "none (in process)",
    TENSORFLOW_PATH: "none (in process)",
    LITERT_PATH: "none (in process)",
    ALONE_PATH: "none (in process)",
    "served /infer": "HTTP/1.1, JPEG body",
    "served V2": "REST: HTTP/1.1, JSON header + binary tensors",
    "served gRPC": "gRPC: HTTP/2, protobuf with raw_input_contents",
    "mtcnn package": "none (in process)",
    KSERVE_NAIVE.path: "REST: HTTP/1.1, JSON header + binary tensors",
    KSERVE_TUNED.path: "gRPC: HTTP/2, protobuf with raw_input_contents",
    KSERVE_COUNTERPART: "gRPC: HTTP/2, protobuf with raw_input_contents",
    **dict.fromkeys(CEILING_PATHS, "none (in process)"),
    **dict.fromkeys((TF_SERVED, OFF, ON), "REST: HTTP/1.1, JSON header + binary tensors"),
}


def _num(value: float, digits: int = 1) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def _table(header: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def cell_row(cell: Cell) -> list[str]:
    requests = str(cell.requests)
    if cell.capped:
        requests += f" of {cell.planned} (time cap)"
    if cell.errors:
        requests += f", {cell.errors} errors"
    return [
        cell.model,
        cell.path,
        WIRE.get(cell.path, "?"),
        cell.batching,
        str(cell.concurrency),
        str(cell.batch),
        _num(cell.mean_batch),
        requests,
        _num(cell.images_per_s),
        _num(cell.p(50)),
        _num(cell.p(90)),
        _num(cell.p(99)),
        cell.baseline_label or "itself",
        _num(cell.ratio("images/s"), 2),
        _num(cell.ratio("p50"), 2),
        _num(cell.ratio("p99"), 2),
    ]


def write_markdown(
    ctx: Context,
    out: Path,
    png: Path,
    machine: dict[str, str],
    targets: list[Target],
    meta: dict[str, str],
) -> None:
    plan = ctx.plan
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m tests.bench{' --quick' if plan.quick else ''}`) "
        f"on {meta['date']}: a **{'quick (smoke)' if plan.quick else 'full'}** run that took "
        f"{meta['duration']}. Do not edit by hand: run it again.",
        "",
        "Every figure is measured in this one run, and every comparison is a ratio to a "
        "baseline measured in the same run, on the same machine, minutes apart. The machine "
        "is shared with other work, so absolute numbers move from run to run; the ratios "
        "move less, but they move too (see the load average below).",
        "",
        f"![throughput and latency per model]({os.path.relpath(png, out.parent)})",
        "",
        "## Machine",
        "",
        *_table(
            ("what", "value"),
            [[k, v] for k, v in machine.items()]
            + [
                ["load average at start (1, 5, 15 min)", meta["load_start"]],
                ["load average at end", meta["load_end"]],
            ],
        ),
        "",
        "## Targets",
        "",
        "Issue 7's targets, issue 13's (LiteRT) and tracing's, judged from this run (the "
        "tests never assert them).",
        "",
        *_table(
            ("target", "needed", "measured", "result"),
            [[t.name, t.needed, t.measured, t.verdict] for t in targets],
        ),
        "",
    ]
    headline = headline_rows(ctx)
    if headline:
        lines += [
            "## Headline ratios",
            "",
            "Images/s of one path ÷ images/s of another, both measured in this run at the "
            "same concurrency (a ratio above 1: the first is faster). `/infer` does what the "
            "in-process pipeline does (decode, preprocess, graph, postprocess) plus HTTP; V2 "
            "carries the task's tensors already made, so it skips the decoding and "
            "preprocessing that the in-process pipeline pays for: V2 ratios above 1 are that. "
            "gRPC ÷ REST V2 compares the two wire encodings of the same tensors on the same "
            "server.",
            "",
            *_table(
                ("model", "ratio", *(f"concurrency {c}" for c in plan.concurrencies)),
                headline,
            ),
            "",
        ]
    gains = batching_gains(ctx)
    if gains:
        lines += [
            "## Dynamic batching",
            "",
            f"The server with `{' '.join(plan.batching_on)}` (on) against "
            f"`{' '.join(plan.batching_off)}` (off), next to what batching gives the raw "
            "graph alone (its images/s at the batch size ÷ at batch 1). An entry served on "
            "LiteRT does not batch there (no gain measured, ×4 memory: "
            "server/modelzoo_server/model.py), so its batcher is measured on its "
            f"TensorFlow servers (`{TF_SERVED}`, REST V2 at concurrency "
            f"{', '.join(str(c) for c in TF_CONCURRENCIES)}).",
            "",
            *_table(
                (
                    "model",
                    "path",
                    "concurrency",
                    "on ÷ off",
                    "raw graph batch",
                    "raw graph gain",
                    "share of the raw gain",
                ),
                [
                    [
                        g["model"],
                        g["path"],
                        str(g["concurrency"]),
                        _num(g["gain"], 2),
                        str(g["raw_batch"]),
                        _num(g["raw_gain"], 2),
                        f"{g['share'] * 100:.1f} %",
                    ]
                    for g in gains
                ],
            ),
            "",
        ]
    cells = sorted(
        ctx.cells,
        key=lambda c: (
            plan.models.index(c.model) if c.model in plan.models else 99,
            PATH_ORDER.index(c.path) if c.path in PATH_ORDER else 99,
            c.batching,
            c.concurrency,
            c.batch,
        ),
    )
    lines += [
        MEASUREMENTS_HEADING,
        "",
        f"{len(cells)} cells, one row each. Baselines: the raw graph's rows are divided by "
        "the raw graph at batch 1; the in-process pipeline's rows (on TensorFlow, and on "
        "LiteRT at concurrency 1) by the raw graph at batch 1 too; every other row (served "
        "/infer, REST V2 and gRPC, `mtcnn` package, KServe) by the in-process pipeline on "
        "TensorFlow of the same model at the same concurrency. *Wire* is how "
        "the request travels. Latencies are per request (per call "
        "for the raw graph, whose images/s count every image of the batch). *Images per graph "
        "call* is the batch the graph ran: the raw graph's batch size, the in-process "
        "pipeline's round, and for the server the mean of its `modelzoo_batch_size` "
        "histogram over the cell.",
        "",
        *_table(COLUMNS, [cell_row(c) for c in cells]),
        "",
        "## Resident memory",
        "",
    ]
    memory = ctx.memory
    if memory is None:
        lines += ["Not measured in this run.", ""]
    else:
        lines += [
            f"`{memory.model}` served with {memory.batching}: {memory.requests:,} requests "
            f"(half `/infer`, half V2, concurrency 16) in {memory.seconds:.0f} s"
            + (f", {memory.errors} errors" if memory.errors else "")
            + (f"; the time cap stopped it before {memory.planned:,}" if memory.capped else "")
            + ". VmRSS from `/proc/<pid>/status`. Growth is measured from after "
            f"{memory.warmup_requests:,} warm-up requests: the first requests allocate "
            "one-off buffers (TensorFlow's and oneDNN's for each new batch size the batcher "
            "forms, the allocator's arenas); the growth from *ready* is in the table too.",
            "",
            "VmRSS every tenth of the run (requests after the warm-up → MiB): "
            + ", ".join(f"{n:,} → {rss / 2**20:.0f}" for n, rss in memory.curve)
            + ".",
            "",
            *_table(
                ("when", "VmRSS MiB", "÷ at ready", "÷ after warm-up"),
                [
                    [
                        when,
                        _num(rss / 2**20),
                        _num(rss / memory.at_ready, 3),
                        _num(rss / memory.after_warmup, 3),
                    ]
                    for when, rss in (
                        ("ready", memory.at_ready),
                        (f"after {memory.warmup_requests:,} warm-up requests", memory.after_warmup),
                        (f"after {memory.requests:,} more requests", memory.after),
                    )
                ],
            ),
            "",
        ]
    for section in ctx.sections:
        lines += [f"## {section.title}", "", section.text, ""]
    lines += ["## Not measured in this run", ""]
    if ctx.skipped:
        lines += [f"- {what}: {why}" for what, why in ctx.skipped]
    else:
        lines += ["Nothing: every planned cell ran."]
    lines += [
        "",
        "## How it is measured",
        "",
        "- **Photos**: scikit-image's astronaut, coffee and cat (JPEG, quality 90) and "
        "matplotlib's Grace Hopper JPEG, cycled through by every path.",
        "- **Raw graph**: the server's `GraphModel.run` (the compiled, pruned graph) on "
        "prepared tensors, in the bench process, at each batch size (the batch sizes in "
        "alternating slices too).",
        "- **In-process pipeline** (the ceiling): the server's own decode → preprocess → "
        "graph → postprocess code in the bench process, no HTTP, no queue: `c` images per "
        "round, decoded on a pool as large as the server's executor, then one graph call on "
        "the stacked batch for models that batch (for those that do not, each image's whole "
        "pipeline on that pool); each image's latency is its round's. It runs the "
        f"TensorFlow graph (`{TENSORFLOW_PATH}`); for an entry served on LiteRT, also the "
        f"server's own LiteRT model at concurrency 1 (`{LITERT_PATH}`: "
        "`runtimes.load_runtime` with the server's default pool for this CPU quota, one "
        "image a call), the baseline of a lone `/infer` on the same runtime.",
        "- **Order**: per model, the raw graph first; then every server of the model is "
        "started and stays up (idle while another path is measured), and for each "
        f"concurrency the in-process baseline, the served cells and the peers run in "
        f"{plan.slices} alternating slices (A B C A B C …), so that a change in the "
        "machine's load during the run hits every path alike.",
        "- **Served**: the real `python -m modelzoo_server` on a loopback port with its "
        "default flags (thread pools from the CPU quota), plus "
        f"`{' '.join(plan.batching_on)}` (batching on) or `{' '.join(plan.batching_off)}` "
        "(off); models that do not batch run once (`n/a`), and so do models served on "
        "LiteRT, which never batches: one server with the default flags (off), plus REST V2 "
        f"on TensorFlow (`{TF_SERVED}`), batching on and off. Load: an aiohttp client in the "
        "bench process, `c` closed-loop clients, a fixed request count per cell (the same "
        "for every path at one concurrency: about "
        f"{plan.cell_seconds:.0f} s of the raw graph's images/s, {plan.min_rounds}+ requests "
        f"per client, at most {plan.max_requests}), a time cap of "
        f"{plan.cell_cap_seconds:.0f} s per cell, after max(`c`, 4) warm-up requests. "
        "`/infer` gets the JPEG as the raw body; V2 gets the task's own tensors with the "
        "binary tensor data extension and asks for binary outputs (tritonclient's defaults).",
        "- **gRPC**: the same tensors to the same server's `inference.GRPCInferenceService` "
        "(`--grpc-port`) through `tritonclient.grpc.aio`: one client, so one HTTP/2 channel "
        "kept open for the whole slice, carries all `c` closed-loop clients; tensors go as "
        "raw bytes in `raw_input_contents`, outputs come back in `raw_output_contents`. "
        "Same request count, warm-up and time cap as REST.",
        "- **Answers**: every V2 answer, REST and gRPC, is decoded with tritonclient and "
        "checked against the raw graph's outputs for the same tensors (same outputs, shapes "
        "and dtypes, values within a float tolerance, and for classifiers the same top "
        "label); a wrong answer counts as an error, never as a latency. KServe's answers, "
        "REST and gRPC, are checked the same way; `/infer` answers only need HTTP 200.",
        "- **`mtcnn` package**: `MTCNN().detect_faces` on the same JPEGs (decoding "
        "included, as for `/infer`), in the bench process, `c` threads sharing one detector.",
        "- **KServe**: `kserve` "
        f"{meta['kserve_version']} in its own venv (`$MODELZOO_CACHE/bench/`), "
        "`ModelServer` serving the same frozen graph through `tests/bench/kserve_model.py` "
        "in two set-ups. *Naive* (`KServe V2, naive`): default flags, a synchronous "
        "`predict` as KServe's custom-model docs write it, the same REST V2 payloads as "
        "`served V2`. *Tuned* (`KServe gRPC, tuned`): the pruned function with an input "
        "signature (as ModelZoo's TensorFlow runtime), an async `predict` handing the graph "
        "call to the loop's executor, `--max_asyncio_workers` as large as ModelZoo's "
        "executor, one worker (`--workers` forks REST processes only), driven like "
        "`served gRPC`: KServe's REST decoder turns binary tensors into Python lists, its "
        "gRPC servicer does not (see *Where KServe's time goes*). Beside it, like for like, "
        f"`{KSERVE_COUNTERPART}`: ModelZoo's server on the same graph and TensorFlow "
        "(`--runtime tensorflow`, where it would pick LiteRT by default), batching off (one "
        "graph call a request, as KServe), the same gRPC client.",
        "- The client shares the machine's cores with the server it measures; so does "
        "every peer's.",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


def _kserve_pairs() -> list[tuple[tuple[str, str], tuple[str, str], str]]:
    """Ours ÷ KServe on the same wire: REST V2 ÷ the naive set-up, gRPC ÷ the tuned one
    (the server as it runs by default, then its like-for-like counterpart)."""
    pairs = []
    for ours, setup in (
        ("served V2", KSERVE_NAIVE),
        ("served gRPC", KSERVE_TUNED),
        (KSERVE_COUNTERPART, KSERVE_TUNED),
    ):
        for batching in ("on", "off", "n/a"):
            label = f"{ours}{'' if batching == 'n/a' else f', batching {batching}'}"
            pairs.append(((ours, batching), (setup.path, "n/a"), f"{label} ÷ {setup.path}"))
    return pairs


def _inprocess_pairs() -> list[tuple[tuple[str, str], tuple[str, str], str]]:
    """Served ÷ the in-process pipeline: on TensorFlow, and /infer on LiteRT too (measured
    at concurrency 1 only, for an entry served on LiteRT)."""
    pairs = []
    for ours, batchings, pipeline in (
        ("served /infer", ("on", "off", "n/a"), TENSORFLOW_PATH),
        ("served V2", ("on", "n/a"), TENSORFLOW_PATH),
        ("served /infer", ("off", "n/a"), LITERT_PATH),
    ):
        for batching in batchings:
            label = f"{ours}{'' if batching == 'n/a' else f', batching {batching}'}"
            pairs.append(((ours, batching), (pipeline, "n/a"), f"{label} ÷ {pipeline}"))
    return pairs


def headline_rows(ctx: Context) -> list[list[str]]:
    pairs = [
        *_inprocess_pairs(),
        (("served gRPC", "on"), ("served V2", "on"), "gRPC ÷ REST V2, batching on"),
        (("served gRPC", "off"), ("served V2", "off"), "gRPC ÷ REST V2, batching off"),
        (("served gRPC", "n/a"), ("served V2", "n/a"), "gRPC ÷ REST V2"),
        (("served /infer", "n/a"), ("mtcnn package", "n/a"), "served /infer ÷ `mtcnn` package"),
        *_kserve_pairs(),
    ]
    rows = []
    for model in ctx.plan.models:
        for (path, batching), (other, other_batching), label in pairs:
            values = []
            for c in ctx.plan.concurrencies:
                mine = ctx.find(model, path, batching, c)
                theirs = ctx.find(model, other, other_batching, c)
                ok = mine and theirs and theirs.images_per_s > 0
                values.append(_num(mine.images_per_s / theirs.images_per_s, 2) + "×" if ok else "—")
            if any(v != "—" for v in values):
                rows.append([model, label, *values])
    return rows


def write_json(ctx: Context, path: Path, targets: list[Target], machine: dict) -> None:
    data = {
        "quick": ctx.plan.quick,
        "machine": machine,
        "cells": [c.as_json() for c in ctx.cells],
        "targets": [{"name": t.name, "measured": t.measured, "met": t.met} for t in targets],
        "skipped": ctx.skipped,
        "memory": None if ctx.memory is None else vars(ctx.memory),
    }
    path.write_text(json.dumps(data, indent=2))


# -- the plot ----------------------------------------------------------------------------------

STYLES = {
    (TENSORFLOW_PATH, "n/a"): ("in-process pipeline on TensorFlow (ceiling)", "black", "-", "o"),
    (LITERT_PATH, "n/a"): ("in-process pipeline on LiteRT", "tab:gray", "-", "o"),
    ("served /infer", "on"): ("served /infer, batching on", "tab:blue", "-", "s"),
    ("served /infer", "off"): ("served /infer, batching off", "tab:blue", "--", "s"),
    ("served /infer", "n/a"): ("served /infer (model does not batch)", "tab:blue", "-", "s"),
    ("served V2", "on"): ("served V2, batching on", "tab:green", "-", "^"),
    ("served V2", "off"): ("served V2, batching off", "tab:green", "--", "^"),
    ("served V2", "n/a"): ("served V2 (model does not batch)", "tab:green", "-", "^"),
    ("served gRPC", "on"): ("served gRPC, batching on", "tab:purple", "-", "v"),
    ("served gRPC", "off"): ("served gRPC, batching off", "tab:purple", "--", "v"),
    ("served gRPC", "n/a"): ("served gRPC (model does not batch)", "tab:purple", "-", "v"),
    ("mtcnn package", "n/a"): ("mtcnn package detect_faces", "tab:red", "-", "D"),
    (KSERVE_NAIVE.path, "n/a"): ("KServe ModelServer REST V2, naive", "tab:orange", "--", "D"),
    (KSERVE_TUNED.path, "n/a"): ("KServe ModelServer gRPC, tuned", "tab:orange", "-", "D"),
    (KSERVE_COUNTERPART, "off"): ("served gRPC on TensorFlow, batching off", "tab:brown", "-", "v"),
    (KSERVE_COUNTERPART, "n/a"): ("served gRPC on TensorFlow", "tab:brown", "-", "v"),
}


def plot(ctx: Context, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    models = [m for m in ctx.plan.models if any(c.model == m for c in ctx.cells)]
    if not models:
        return
    fig, axes = plt.subplots(
        len(models), 3, figsize=(16, 3.6 * len(models)), squeeze=False, constrained_layout=True
    )
    handles: dict[str, object] = {}
    for row, model in enumerate(models):
        mine = [c for c in ctx.cells if c.model == model]
        throughput, latency, raw = axes[row]
        for (path, batching), (label, colour, line, marker) in STYLES.items():
            series = sorted(
                (c for c in mine if c.path == path and c.batching == batching),
                key=lambda c: c.concurrency,
            )
            if not series:
                continue
            xs = [c.concurrency for c in series]
            kwargs = {"color": colour, "linestyle": line, "marker": marker, "label": label}
            (h,) = throughput.plot(xs, [c.images_per_s for c in series], **kwargs)
            latency.plot(xs, [c.p(99) for c in series], **kwargs)
            latency.plot(
                xs,
                [c.p(50) for c in series],
                color=colour,
                linestyle=":",
                marker=marker,
                alpha=0.35,
            )
            handles.setdefault(label, h)
        throughput.set_title(f"{model}: images/s by concurrency")
        latency.set_title(f"{model}: p99 latency (faint dotted: p50), ms")
        for ax in (throughput, latency):
            ax.set_xscale("log", base=2)
            ax.set_xticks(ctx.plan.concurrencies, [str(c) for c in ctx.plan.concurrencies])
            ax.set_xlabel("concurrent clients")
            ax.grid(True, alpha=0.3)
        throughput.set_ylim(bottom=0)
        latency.set_yscale("log")
        plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
        latency.yaxis.set_major_formatter(plain)
        latency.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        series = sorted((c for c in mine if c.path == "raw graph"), key=lambda c: c.batch)
        raw.bar(
            [str(c.batch) for c in series],
            [c.images_per_s for c in series],
            color="tab:gray",
        )
        for index, c in enumerate(series):
            raw.annotate(
                f"{c.ratio('images/s'):.2f}×",
                (index, c.images_per_s),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        raw.set_title(f"{model}: raw graph images/s by batch size (× batch 1)")
        raw.set_xlabel("batch size")
        raw.grid(True, axis="y", alpha=0.3)
    fig.legend(
        list(handles.values()),
        list(handles.keys()),
        loc="outside lower center",
        ncol=min(4, len(handles)),
        fontsize=9,
    )
    mode = "quick (smoke) run" if ctx.plan.quick else "full run"
    fig.suptitle(f"ModelZoo benchmarks, {mode}: see docs/benchmarks.md for the ratios")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
