"""Issue 7's targets, issue 13's (LiteRT) and tracing's, judged from one run's cells: reported
as met / missed, never asserted."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from tests.bench import inprocess, litert, tracing_cost
from tests.bench.peers import KSERVE_COUNTERPART, KSERVE_NAIVE, KSERVE_TUNED
from tests.bench.plan import CLASSIFIER, FACES
from tests.bench.run import Context
from tests.bench.stats import Cell


@dataclass(frozen=True)
class Target:
    name: str
    needed: str
    measured: str
    met: bool | None  # None: not measured in this run
    reported: bool = False  # a figure with no threshold: measured, never judged

    @property
    def verdict(self) -> str:
        if self.reported:
            return "reported"
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


def _missing(name: str, needed: str, why: str) -> Target:
    return Target(name, needed, f"not measured in this run: {why}", None)


def _best(cells: list[Cell]) -> Cell | None:
    return max(cells, key=lambda c: c.images_per_s, default=None)


# Why a model served on LiteRT has no "batching on" cells (modelzoo_server.model.why_unbatched;
# the measurement is the comment above LITERT_UNBATCHED in server/modelzoo_server/model.py).
LITERT_UNBATCHED = (
    "served on LiteRT, which does not batch: no gain measured, ×4 memory "
    "(server/modelzoo_server/model.py, LITERT_UNBATCHED)"
)


def on_litert(ctx: Context, model: str) -> bool:
    """Whether this run served `model` on LiteRT (its default server: batching off)."""
    return ctx.litert is not None and model in ctx.litert.served


def _served_label(ctx: Context, cell: Cell | None) -> str:
    """How the default server ran a cell, for a target's name: "LiteRT, batching off"."""
    if cell is None:
        return "default server"
    parts = ["LiteRT"] if on_litert(ctx, cell.model) else []
    if cell.batching != "n/a":
        parts.append(f"batching {cell.batching}")
    return ", ".join(parts) or "default server"


def batching_gains(ctx: Context) -> list[dict]:
    """On ÷ off per batchable model, endpoint and concurrency, beside the raw graph's gain;
    for an entry served on LiteRT (which does not batch), its TensorFlow server's
    (litert.TF_SERVED, at litert.TF_CONCURRENCIES)."""
    rows = []
    models = dict.fromkeys(c.model for c in ctx.cells if c.batching == "on")
    for model in models:
        raw1 = ctx.find(model, "raw graph", "n/a", 1, 1)
        sizes = [c.batch for c in ctx.cells if c.model == model and c.path == "raw graph"]
        for concurrency in ctx.plan.concurrencies:
            if concurrency == 1:
                continue
            batch = max((b for b in sizes if b <= concurrency), default=1)
            raw = ctx.find(model, "raw graph", "n/a", 1, batch)
            for path in ("served V2", "served gRPC", "served /infer", litert.TF_SERVED):
                on = ctx.find(model, path, "on", concurrency)
                off = ctx.find(model, path, "off", concurrency)
                if not (on and off and raw and raw1):
                    continue
                if not (off.images_per_s > 0 and raw1.images_per_s > 0):
                    continue
                gain = on.images_per_s / off.images_per_s
                raw_gain = raw.images_per_s / raw1.images_per_s
                rows.append(
                    {
                        "model": model,
                        "path": path,
                        "concurrency": concurrency,
                        "gain": gain,
                        "raw_batch": batch,
                        "raw_gain": raw_gain,
                        "share": gain / raw_gain,
                    }
                )
    return rows


def judge(ctx: Context) -> list[Target]:
    targets: list[Target] = []
    find = ctx.find

    # Face detection: served vs the `mtcnn` package, concurrency 1.
    name, needed = "face detection, concurrency 1: served ÷ `mtcnn` package images/s", "≥ 3×"
    served = find(FACES, "served /infer", "n/a", 1)
    package = find(FACES, "mtcnn package", "n/a", 1)
    if served and package:
        ratio = served.images_per_s / package.images_per_s
        targets.append(
            Target(
                name,
                needed,
                f"{ratio:.2f}× ({served.images_per_s:.1f} vs {package.images_per_s:.1f} images/s)",
                ratio >= 3,
            )
        )
    else:
        targets.append(_missing(name, needed, f"{FACES} was not measured"))

    # Classifier, concurrency 1: served p50 within 5 % (or 1 ms) of in-process p50, like
    # for like: the in-process pipeline on the runtime the default server runs it on.
    litert_classifier = on_litert(ctx, CLASSIFIER)
    inproc_path = inprocess.LITERT_PATH if litert_classifier else inprocess.TENSORFLOW_PATH
    inproc1 = find(CLASSIFIER, inproc_path, "n/a", 1)
    runtime = "LiteRT" if litert_classifier else "TensorFlow"
    for batching in ("off", "on"):
        name = (
            f"classifier, concurrency 1: served /infer p50 (batching {batching}) vs in-process, "
            f"both on {runtime}"
        )
        needed = "within 5 % or 1 ms"
        served = find(CLASSIFIER, "served /infer", batching, 1)
        if served and inproc1:
            mine, ceiling = served.p(50), inproc1.p(50)
            met = mine <= max(ceiling * 1.05, ceiling + 1.0)
            targets.append(
                Target(
                    name,
                    needed,
                    f"{mine:.1f} vs {ceiling:.1f} ms ({(mine / ceiling - 1) * 100:+.1f} %, "
                    f"{mine - ceiling:+.1f} ms)",
                    met,
                )
            )
        elif batching == "on" and litert_classifier:
            targets.append(_missing(name, needed, f"{CLASSIFIER} is {LITERT_UNBATCHED}"))
        else:
            targets.append(_missing(name, needed, f"{CLASSIFIER} was not measured"))

    # Classifier at saturation: best served vs best in-process (batched) images/s.
    name = "classifier at saturation: best served /infer ÷ best in-process images/s"
    needed = "≥ 85 %"
    served_best = _best(
        [c for c in ctx.cells if c.model == CLASSIFIER and c.path == "served /infer"]
    )
    inproc_best = _best(
        [c for c in ctx.cells if c.model == CLASSIFIER and c.path == inprocess.TENSORFLOW_PATH]
    )
    if served_best and inproc_best:
        ratio = served_best.images_per_s / inproc_best.images_per_s
        targets.append(
            Target(
                name,
                needed,
                f"{ratio * 100:.1f} % ({served_best.images_per_s:.1f} images/s at concurrency "
                f"{served_best.concurrency}, batching {served_best.batching}, vs "
                f"{inproc_best.images_per_s:.1f}, {inproc_best.path} at concurrency "
                f"{inproc_best.concurrency})",
                ratio >= 0.85,
            )
        )
    else:
        targets.append(_missing(name, needed, f"{CLASSIFIER} was not measured"))

    # Dynamic batching: on ÷ off at 16 and 64 vs the raw graph's gain from batch 1. A
    # classifier served on LiteRT (which does not batch) is judged on its TensorFlow server,
    # REST V2 at litert.TF_CONCURRENCIES; its other paths and concurrencies have no batcher.
    gains = {
        (g["path"], g["concurrency"]): g for g in batching_gains(ctx) if g["model"] == CLASSIFIER
    }
    tf_measured = " and ".join(str(c) for c in litert.TF_CONCURRENCIES)
    for concurrency in (16, 64):
        for endpoint in ("served V2", "served /infer"):
            on_tf = litert_classifier and endpoint == "served V2"
            path = litert.TF_SERVED if on_tf else endpoint
            name = f"classifier, concurrency {concurrency}: batching on ÷ off ({path})"
            needed = "≥ 90 % of the raw graph's gain"
            g = gains.get((path, concurrency))
            if g is None:
                if concurrency not in ctx.plan.concurrencies:
                    why = f"concurrency {concurrency} is not in this run's plan"
                elif not litert_classifier:
                    why = f"{CLASSIFIER} was not measured with batching on and off"
                elif path != litert.TF_SERVED:
                    why = (
                        f"{CLASSIFIER} is {LITERT_UNBATCHED}; the batcher is measured on its "
                        f"TensorFlow server, REST V2 only ({litert.TF_SERVED})"
                    )
                elif concurrency not in litert.TF_CONCURRENCIES:
                    why = (
                        f"{CLASSIFIER} is {LITERT_UNBATCHED}; its TensorFlow server, where "
                        f"the batcher runs, is measured at concurrency {tf_measured} only"
                    )
                else:
                    why = (
                        f"{CLASSIFIER}'s TensorFlow servers (batching on and off) were not measured"
                    )
                targets.append(_missing(name, needed, why))
                continue
            targets.append(
                Target(
                    name,
                    needed,
                    f"{g['gain']:.2f}× vs raw graph batch 1→{g['raw_batch']} "
                    f"{g['raw_gain']:.2f}× ({g['share'] * 100:.1f} %)",
                    g["share"] >= 0.9,
                )
            )

    # KServe: the classifier at concurrency 16, same V2 payloads, against the default
    # server's cell (batching on on TensorFlow; off on LiteRT, which does not batch).
    served = ctx.find_default(CLASSIFIER, "served V2", 16)
    name = (
        f"classifier, concurrency 16: served V2 ({_served_label(ctx, served)}) ÷ KServe "
        "ModelServer, naive"
    )
    needed = "≥ 1.5× images/s and a lower p99"
    kserve = find(CLASSIFIER, KSERVE_NAIVE.path, "n/a", 16)
    if served and kserve and kserve.images_per_s > 0:
        ratio = served.images_per_s / kserve.images_per_s
        targets.append(
            Target(
                name,
                needed,
                f"{ratio:.2f}× images/s ({served.images_per_s:.1f} vs "
                f"{kserve.images_per_s:.1f}); p99 {served.p(99):.0f} vs {kserve.p(99):.0f} ms",
                ratio >= 1.5 and served.p(99) < kserve.p(99),
            )
        )
    else:
        skipped = [why for what, why in ctx.skipped if "KServe" in what]
        why = skipped[0] if skipped else "KServe or concurrency 16 was not measured"
        targets.append(_missing(name, needed, why))

    # Resident memory.
    memory = ctx.memory
    name = f"server resident memory growth over {ctx.plan.memory_requests:,} requests"
    needed = "≤ 5 %"
    if memory is not None:
        growth = memory.growth - 1
        met = growth <= 0.05 and memory.requests >= memory.planned
        targets.append(
            Target(
                name,
                needed,
                f"{growth * 100:+.1f} % ({memory.after_warmup / 2**20:.0f} → "
                f"{memory.after / 2**20:.0f} MiB over {memory.requests:,} requests)",
                met,
            )
        )
    else:
        targets.append(_missing(name, needed, "the memory run did not happen"))
    return [*targets, kserve_fair_target(ctx), *litert_targets(ctx), tracing_target(ctx)]


def kserve_fair_target(ctx: Context) -> Target:
    """ModelZoo's like-for-like counterpart ÷ KServe's tuned set-up (same graph, TensorFlow,
    wire and client), with the profile's cause; no threshold: the ratio is the finding."""
    name = f"KServe: fair ratio ({CLASSIFIER}, {KSERVE_COUNTERPART} ÷ {KSERVE_TUNED.path})"
    needed = "reported, no threshold"
    ratios = []
    for c in ctx.plan.concurrencies:
        kserve = ctx.find(CLASSIFIER, KSERVE_TUNED.path, "n/a", c)
        fair = ctx.find(CLASSIFIER, KSERVE_COUNTERPART, "off", c)
        if kserve is None or fair is None or kserve.images_per_s <= 0:
            continue
        theirs = kserve.images_per_s
        ratio = f"concurrency {c}: {fair.images_per_s / theirs:.2f}× "
        ratio += f"({fair.images_per_s:.1f} vs {theirs:.1f} images/s"
        # As it runs by default: LiteRT where verified (batching off), else batching on.
        default = ctx.find_default(CLASSIFIER, "served gRPC", c)
        if default is not None:
            how = _served_label(ctx, default)
            ratio += f"; served gRPC ({how}): {default.images_per_s / theirs:.2f}×"
        ratios.append(ratio + ")")
    if not ratios:
        why = next((w for what, w in ctx.skipped if "KServe" in what), "KServe was not measured")
        return _missing(name, needed, why)
    cause = ctx.kserve_cause or "no profile in this run"
    return Target(
        name,
        needed,
        f"{'; '.join(ratios)}. Where the time goes (py-spy, see below): {cause}",
        None,
        reported=True,
    )


# -- issue 13: LiteRT (litert.py) ----------------------------------------------------------------


def _litert_saturation(ctx: Context, model: str) -> Target:
    name = f"{model} at saturation: best served ÷ best in-process LiteRT images/s"
    needed = "≥ 85 %"
    top, fastest = litert.best_ceiling(ctx, model), litert.best_served(ctx, model)
    if top is None or fastest is None:
        return _missing(name, needed, "its LiteRT ceiling or served tensor cells were not measured")
    share = fastest.images_per_s / top.images_per_s
    return Target(
        name,
        needed,
        f"{share * 100:.1f} % ({fastest.images_per_s:.1f} images/s, {fastest.path} at "
        f"concurrency {fastest.concurrency}, batching {fastest.batching}, the load generator "
        f"using {litert.client_cores(fastest)} cores; vs {top.images_per_s:.1f}, "
        f"LiteRT {litert.config_label(top)})",
        share >= 0.85,
    )


def _litert_over_tensorflow(ctx: Context, model: str) -> Target:
    concurrencies = " and ".join(str(c) for c in litert.TF_CONCURRENCIES)
    name = f"{model}: served on LiteRT ÷ on TensorFlow, REST V2 images/s, c = {concurrencies}"
    needed = "≥ 2× at each"
    pairs = litert.runtime_pairs(ctx, model)
    if any(lite is None or tensorflow is None for lite, tensorflow in pairs.values()):
        return _missing(name, needed, "a LiteRT or TensorFlow served cell is missing")
    ratios = {
        c: lite.images_per_s / tf.images_per_s if tf.images_per_s > 0 else math.nan
        for c, (lite, tf) in pairs.items()
    }
    measured = "; ".join(
        f"concurrency {c}: {ratios[c]:.2f}× ({lite.images_per_s:.1f} vs {tf.images_per_s:.1f}, "
        f"batching {lite.batching} both)"
        for c, (lite, tf) in pairs.items()
    )
    batched = [
        f"concurrency {c}: {litert.ratio(lite.images_per_s, on.images_per_s)} "
        f"({on.images_per_s:.1f} images/s)"
        for c, (lite, _) in pairs.items()
        if (on := litert.tensorflow_batched(ctx, model, c)) is not None
    ]
    if batched:
        measured += f". Against TensorFlow with batching on: {'; '.join(batched)}"
    return Target(name, needed, measured, all(r >= 2 for r in ratios.values()))


ALONE_NEEDED = "within max(1 ms, 10 %)"


def _alone(mine: Cell, baseline: Cell) -> tuple[str, bool]:
    """Issue 13's rule for a lone request: (both p50s and the gap, whether it is within
    1 ms or 10 % of the baseline's, whichever is larger)."""
    p50, base = mine.p(50), baseline.p(50)
    gap = p50 - base
    text = f"{p50:.1f} vs {base:.1f} ms ({gap:+.1f} ms, {(p50 / base - 1) * 100:+.1f} %)"
    return text, gap <= max(1.0, 0.1 * base)


def _split(served: Cell, baseline: Cell) -> str:
    """Where a served request's mean time went, from the server's own /metrics over the
    cell: outside its handler (HTTP on both sides, the client), in the handler around the
    model call (body, tensors or image, executor hops), and the model call itself."""
    client = statistics.fmean(served.latencies) * 1000
    base = statistics.fmean(baseline.latencies) * 1000
    handler, call = served.handler_ms, served.model_call_ms
    if math.isnan(handler) or math.isnan(call):
        return f"means {client:.1f} vs {base:.1f} ms (the server's /metrics were not read)"
    return (
        f"means {client:.1f} vs {base:.1f} ms; of the served request's, {client - handler:.1f} "
        f"ms outside the server's handler (HTTP both ways, the client), {handler - call:.1f} "
        f"ms in the handler around the model call, {call:.1f} ms the model call"
    )


def _bytes(sizes: list[int]) -> str:
    """One size, or the photos' range where they differ (mtcnn takes the image itself)."""
    low, high = min(sizes), max(sizes)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def _litert_v2_alone(ctx: Context, model: str) -> Target:
    """Served V2 against the interpreter that a lone request gets on the default server
    (one, with its lone member's threads), measured in the same alternating slices."""
    found = ctx.litert
    threads = found.alone_threads.get(model) if found is not None else None
    each = f"{threads} thread{'s' if threads != 1 else ''}" if threads else "its threads"
    name = (
        f"{model}, concurrency 1: served V2 p50 vs bare LiteRT interpreter ({each} × 1 "
        "interpreter, what a lone request runs on)"
    )
    served = ctx.find_default(model, "served V2", 1)
    bare = ctx.find(model, litert.ALONE_PATH, "n/a", 1)
    if found is None or served is None or bare is None:
        why = f"its served V2 cell or its {litert.ALONE_PATH!r} cell at concurrency 1"
        return _missing(name, ALONE_NEEDED, why + " was not measured")
    measured, met = _alone(served, bare)
    measured += (
        f"; {_split(served, bare)}; input tensors {_bytes(found.tensor_bytes[model])} bytes "
        f"a request, REST V2 body {_bytes(found.v2_body_bytes[model])} bytes"
    )
    return Target(name, ALONE_NEEDED, measured, met)


def _litert_infer_alone(ctx: Context, model: str) -> Target:
    """Served /infer against the same pipeline in process, both on the server's LiteRT."""
    name = f"{model}, concurrency 1: served /infer p50 vs in-process pipeline on LiteRT"
    served = ctx.find_default(model, "served /infer", 1)
    pipeline = ctx.find(model, inprocess.LITERT_PATH, "n/a", 1)
    if served is None or pipeline is None:
        why = "its served /infer or in-process LiteRT cell at concurrency 1 was not measured"
        return _missing(name, ALONE_NEEDED, why)
    measured, met = _alone(served, pipeline)
    return Target(name, ALONE_NEEDED, f"{measured}; {_split(served, pipeline)}", met)


def _litert_memory(ctx: Context) -> Target:
    """The issue's baseline: a bare process with ONE interpreter (the CPU quota's threads)
    that loads and runs it; the bare process with the server's pool is reported beside it."""
    memory, found = ctx.memory, ctx.litert
    requests = f"{memory.requests:,}" if memory is not None else "its"
    name = (
        f"{CLASSIFIER} on LiteRT: resident memory after {requests} requests ÷ bare process "
        "(one interpreter)"
    )
    needed = "≤ 2×"
    if memory is None or found is None or not found.bare_rss:
        return _missing(name, needed, "the memory run or the bare process did not happen")
    bare = statistics.median(found.bare_rss)
    ratio = memory.after / bare
    measured = (
        f"{ratio:.2f}× ({memory.after / 2**20:.0f} vs {bare / 2**20:.0f} MiB, the bare "
        f"process with {found.bare_label})"
    )
    if found.pool_rss:
        pool = statistics.median(found.pool_rss)
        measured += (
            f"; against a bare process with the server's pool ({found.pool_label}, "
            f"{pool / 2**20:.0f} MiB): {litert.ratio(memory.after, pool)}. They differ as "
            "each interpreter packs its own copy of the weights"
        )
    return Target(name, needed, measured, ratio <= 2)


def _litert_startup(ctx: Context) -> Target:
    """Against the same one-interpreter bare process as the memory target."""
    name = (
        f"{CLASSIFIER}: process start → ready, server vs bare process's first answer "
        "(one interpreter)"
    )
    needed = "within 1 s (medians)"
    found = ctx.litert
    if found is None or not found.server_ready_s or not found.bare_answer_s:
        return _missing(name, needed, "the start-up runs did not happen")
    server = statistics.median(found.server_ready_s)
    bare = statistics.median(found.bare_answer_s)
    measured = (
        f"{server:.2f} vs {bare:.2f} s ({server - bare:+.2f} s, {len(found.server_ready_s)} "
        f"runs; bare process with {found.bare_label})"
    )
    if found.pool_answer_s:
        pool = statistics.median(found.pool_answer_s)
        measured += f"; the bare process with the server's pool answered in {pool:.2f} s"
    return Target(name, needed, measured, server - bare <= 1.0)


def litert_targets(ctx: Context) -> list[Target]:
    """Per entry served on LiteRT: saturation, LiteRT ÷ TensorFlow and a lone request's
    latency (V2 against the ceiling, /infer against the in-process pipeline); for the
    classifier: memory and start-up against a bare interpreter process."""
    entries = ctx.litert.entries if ctx.litert is not None else []
    served = ctx.litert.served if ctx.litert is not None else []
    per_entry = [
        target_of(ctx, model)
        for target_of in (_litert_saturation, _litert_over_tensorflow, _litert_v2_alone)
        for model in entries or ["entries served on LiteRT"]
    ]
    # Needs no ceiling: every entry served on LiteRT (each has an image task, and /infer).
    per_entry += [_litert_infer_alone(ctx, m) for m in served or ["entries served on LiteRT"]]
    return [*per_entry, _litert_memory(ctx), _litert_startup(ctx)]


# -- tracing (tracing_cost.py) --------------------------------------------------------------------


def tracing_target(ctx: Context) -> Target:
    """The no-op calls against the off cells' own noise (tracing_cost.RULE)."""
    name = "tracing off costs within noise"
    needed = "no-op calls' share of a request < the off cells' slice spread, at each concurrency"
    cost = ctx.tracing
    if cost is None:
        why = next((why for what, why in ctx.skipped if what == "tracing's cost"), "not run")
        return _missing(name, needed, why)
    unpriced = [call.callee for call in cost.calls if math.isnan(call.ns)]
    if unpriced:
        return _missing(name, needed, f"no probe prices {', '.join(unpriced)}")
    measured = "; ".join(
        f"concurrency {c}: {cost.share(c) * 100:.3f} % vs {cost.spread(c) * 100:.1f} %"
        for c in tracing_cost.CONCURRENCIES
    )
    met = all(cost.within_noise(c) for c in tracing_cost.CONCURRENCIES)
    return Target(name, needed, f"{measured} ({cost.per_request_us:.2f} µs per request)", met)
